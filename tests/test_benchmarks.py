"""The benchmark commands themselves, on the small model: they run, count what they
say they count, and apply their defaults (the numbers they measure live in
docs/BENCHMARKS.md, never in assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def ponder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ponder.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_bench_engine_counts_tokens_and_shares_prefixes(small_model: str, tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    p = ponder(
        "bench", "engine", "--model", small_model, "--ns", "2", "--tokens", "8",
        "--skip", "sequential,server", "--search-rounds", "3", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["flash_attn"] == "auto" and r["ns"] == [2] and r["search_rounds"] == 3
    assert r["ponder"]["throughput"]["2"]["tokens"] == 16
    for name in ("short", "long"):
        s = r["ponder"]["search"][name]
        assert s["tokens"] == 16 * 3 * 32
        # every round's prefixes are forked from the cache: each of the 48 requests
        # computes its prompt's last token (a few, two, where re-tokenizing the text
        # merges a token across the old boundary)
        assert 48 <= s["prompt_tokens_computed"] <= 2 * 48
        assert s["prompt_tokens_cached"] > 20 * s["prompt_tokens_computed"]
    assert "| 2 |" in p.stdout


def test_bench_engine_bad_skip_is_a_clear_error(small_model: str) -> None:
    p = ponder("bench", "engine", "--model", small_model, "--skip", "servr")
    assert p.returncode == 2 and "--skip takes" in p.stderr and "Traceback" not in p.stderr
    p = ponder("bench", "engine", "--model", small_model, "--search-rounds", "0")
    assert p.returncode == 2 and "--search-rounds must be" in p.stderr
    assert "Traceback" not in p.stderr


def test_bench_strategies_defaults_to_budget_8(small_model: str, tmp_path: Path) -> None:
    out = tmp_path / "strategies.json"

    def bench(strategies: str) -> subprocess.CompletedProcess[str]:
        return ponder(
            "bench", "strategies", "--model", small_model, "--limit", "1", "--max-tokens", "16",
            "--strategies", strategies, "--db", str(tmp_path / "r.sqlite"), "--out", str(out),
        )  # fmt: skip

    p = bench("greedy,self-consistency")
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["settings"]["budget"] == 8 and r["settings"]["limit"] == 1
    rows = {row["strategy"]: row for row in r["rows"]}
    assert set(rows) == {"greedy", "self-consistency"}
    sc = rows["self-consistency"]
    # 8 samples of one prompt: it is computed once and forked 7 times
    assert sc["prompt_tokens_cached"] == 7 * sc["prompt_tokens_computed"]
    assert rows["greedy"]["tokens_generated"] <= 16
    assert sc["cells_resumed"] == 0

    # the same command again resumes from the database: nothing is run twice, the
    # counts come from the stored cells, and the row says its seconds are not the total
    p2 = bench("self-consistency")
    assert p2.returncode == 0, p2.stderr
    [again] = json.loads(out.read_text())["rows"]
    assert again["cells_resumed"] == 1
    assert again["tokens_generated"] == sc["tokens_generated"]
    assert "(resumed: 1 done before)" in p2.stdout


def test_bench_attention_builds_the_layout_it_times(small_model: str) -> None:
    import llama_cpp as ll

    from ponder import models
    from ponder.benchmarks.attention_bench import Layout, format_table, time_layout
    from ponder.engines.llamacpp.native import NativeContext

    ctx = NativeContext(models.resolve(small_model), 2048, 8, 64, 2, flash_attn=False)
    try:
        source = ctx.tokenize("one two three four five six seven", add_special=False)
        shared = Layout(problems=2, prompt=40, per_problem=3, own=10)
        row = time_layout(ctx, source, shared, steps=2)
        assert row["sequences"] == 6 and row["cells_in_use"] == 2 * 40 + 6 * 10 + 6 * 3
        assert row["seconds_per_step"] > 0
        for seq in range(6):  # every sequence: prompt, own tokens, warm-up + 2 steps
            assert ll.llama_memory_seq_pos_min(ctx.memory, seq) == 0
            assert ll.llama_memory_seq_pos_max(ctx.memory, seq) == 40 + 10 + 3 - 1
        assert ll.llama_memory_seq_pos_max(ctx.memory, 6) == -1  # nothing else
        # the next layout starts from an empty cache
        row = time_layout(ctx, source, Layout(problems=1, prompt=20, per_problem=2), steps=1)
        assert ll.llama_memory_seq_pos_max(ctx.memory, 0) == 20 + 2 - 1
        assert ll.llama_memory_seq_pos_max(ctx.memory, 2) == -1
    finally:
        ctx.close()
    table = format_table({"modes": {"off": {"one-problem": row}}})
    assert "| one-problem | 2 | 24 (1 × 20) | - |" in table


def test_bench_attention_unknown_layout_is_a_clear_error(small_model: str) -> None:
    p = ponder("bench", "attention", "--model", small_model, "--layouts", "one-problm")
    assert p.returncode == 2 and "unknown layouts ['one-problm']" in p.stderr
    assert "Traceback" not in p.stderr


def test_bench_attention_command_times_both_modes(small_model: str, tmp_path: Path) -> None:
    out = tmp_path / "attention.json"
    p = ponder(
        "bench", "attention", "--model", small_model, "--layouts", "64-short", "--threads", "2",
        "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert set(r["modes"]) == {"on", "off"} and r["threads"] == 2
    for mode in ("on", "off"):
        row = r["modes"][mode]["64-short"]
        assert row["sequences"] == 64 and row["cells_in_use"] == 64 * 16 + 64 * 9
    assert "| 64-short | 64 | 1,600 (64 × 16) |" in p.stdout


def test_layout_bench_runs_as_a_benchmark_module(small_model: str, tmp_path: Path) -> None:
    out = tmp_path / "layouts.json"
    p = subprocess.run(
        [
            sys.executable, "-m", "ponder.benchmarks.layout_bench", "--model", small_model,
            "--rounds", "1", "--tokens", "2", "--stream-cells", "256", "--layouts", "32-short",
            "--flash", "on", "--skip", "many,search", "--out", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    assert r["model"] == small_model and r["peak_rss_mib"] > 0
    assert set(r["steps"]) == {"32-short shared flash on", "32-short streams flash on"}
    assert set(r["throughput"]) == {"n32 shared", "n32 streams"}
    assert all(len(v) == 1 and v[0] > 0 for s in ("steps", "throughput") for v in r[s].values())
    assert "throughput n32 streams" in " ".join(p.stdout.split())
