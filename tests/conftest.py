from __future__ import annotations

from collections.abc import Iterator

import pytest

from ponder import models
from ponder.engines.llamacpp.engine import LlamaCppEngine


@pytest.fixture(scope="session")
def small_model() -> str:
    try:
        models.resolve(models.TEST_MODEL)
    except models.ModelError as exc:
        pytest.fail(f"{exc} (make test pulls it)")
    return models.TEST_MODEL


@pytest.fixture(scope="session")
def engine(small_model: str) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(small_model, n_ctx=8192, n_parallel=48, seed=0)
    yield eng
    eng.close()
