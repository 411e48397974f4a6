"""What the benchmarks share: the model file they run, the decoding loop that lays out a
KV cache, particle resampling, peak memory and where their JSON goes."""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path
from typing import Any

import numpy as np

from ponder import models


def model_path(args: argparse.Namespace) -> Path:
    """The file of ``args.model``; an unset model becomes the default, written back so
    that the results name it."""
    args.model = args.model or models.DEFAULT_MODEL
    return models.resolve(args.model)


def counts(text: str, option: str) -> list[int]:
    """A comma list of counts >= 1 (``"1,4,16"``); ``ValueError`` naming ``option``."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{option} takes a comma list of integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{option} needs counts >= 1, got {text!r}")
    return values


def at_least_one(args: argparse.Namespace, *names: str) -> None:
    """``ValueError`` naming the first option among ``names`` below 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def decode_chunks(ctx: Any, items: list[tuple[int, int, int]], logits: bool, bench: str) -> None:
    """Decode (token, position, sequence) items in chunks of ``ctx.n_batch``, each item
    with logits or none; a cache too small for them is a RuntimeError naming ``bench``."""
    for start in range(0, len(items), ctx.n_batch):
        ctx.batch_clear()
        for tok, pos, seq in items[start : start + ctx.n_batch]:
            ctx.batch_add(tok, pos, seq, logits)
        if ctx.decode() != 0:
            raise RuntimeError(f"the KV cache is too small for the {bench} benchmark")


def resample(texts: list[str], rng: np.random.Generator) -> list[str]:
    """One round's prefixes: each of the ``len(texts)`` sequences continues the text of
    a sequence drawn uniformly (with replacement) by ``rng``."""
    return [texts[j] for j in rng.integers(len(texts), size=len(texts))]


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_json(result: dict[str, Any], out: str) -> None:
    """Write ``result`` as indented JSON to the path ``out``; nothing when it is empty."""
    if out:
        Path(out).write_text(json.dumps(result, indent=2))
