"""``ponder bench serve``: one tiny real run of ponder's server and OptiLLM in front of
llama-server on the small model, where ``make peers`` has installed both (the figures it
measures live in docs/BENCHMARKS.md §3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ponder.benchmarks.engine_bench import find_llama_server

OPTILLM = Path("~/.cache/ponder/optillm/bin/python").expanduser()
HAVE_PEERS = find_llama_server() is not None and OPTILLM.exists()


def ponder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ponder.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_bad_clients_are_a_clear_error() -> None:
    bad = ponder("bench", "serve", "--clients", "1,x", "--skip", "optillm")
    assert bad.returncode == 2 and "--clients" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.skipif(not HAVE_PEERS, reason="llama-server / OptiLLM not installed (make peers)")
def test_both_servers_answer_the_same_prompts(small_model: str, tmp_path: Path) -> None:
    out = tmp_path / "serve.json"
    run = ponder("bench", "serve", "--model", small_model, "--clients", "1",
                 "--requests-per-client", "1", "--budget", "2", "--max-tokens", "16",
                 "--optillm-python", str(OPTILLM), "--out", str(out))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["peer_chat_template"] == "chatml"  # matched, and checked before the load
    rows = {r["side"]: r for r in result["rows"]}
    assert set(rows) == {"ponder", "optillm"}
    for row in rows.values():
        assert row["requests"] == 4 and row["errors"] == []
        assert row["generated_tokens"] > 0 and row["rps"] > 0
