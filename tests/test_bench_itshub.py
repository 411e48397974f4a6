"""``ponder bench its-hub``: its checks, the counters it reads from llama-server, the table
it builds, and one real run of both systems on the small model when ``make peers`` has
installed llama-server and its_hub (the figures it measures live in docs/BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pytest

from ponder.benchmarks import itshub_bench as bench
from ponder.benchmarks.engine_bench import find_llama_server
from ponder.evals.metrics import wilson_interval


def ponder(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ponder.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def options(**changes: object) -> argparse.Namespace:
    base = {
        "particles": "4,8",
        "systems": "ponder,its-hub",
        "limit": 40,
        "max_tokens": 256,
        "max_steps": 40,
        "judge_tokens": 32,
        "its_hub_timeout": 0.0,
        "start": 0,
    }
    return argparse.Namespace(**{**base, **changes})


def test_arguments_are_read_in_a_fixed_system_order() -> None:
    assert bench.check_args(options()) == ([4, 8], ["ponder", "its-hub"])
    assert bench.check_args(options(particles="2", systems="its-hub,ponder")) == (
        [2],
        ["ponder", "its-hub"],
    )
    assert bench.check_args(options(systems="its-hub")) == ([4, 8], ["its-hub"])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"particles": "4,x"}, "--particles takes a comma list"),
        ({"particles": "0,4"}, "--particles needs counts >= 1"),
        ({"particles": ""}, "--particles needs counts >= 1"),
        ({"systems": "ponder,itshub"}, "--systems takes ponder, its-hub"),
        ({"systems": ""}, "--systems takes"),
        ({"limit": 0}, "--limit must be >= 1"),
        ({"max_steps": 0}, "--max-steps must be >= 1"),
        ({"judge_tokens": 0}, "--judge-tokens must be >= 1"),
        ({"start": -1}, r"--start must be >= 0 and below --limit \(40\)"),
        ({"start": 40}, r"--start must be >= 0 and below --limit \(40\), got 40"),
        ({"its_hub_timeout": -1.0}, "--its-hub-timeout must be >= 0"),
        ({"its_hub_timeout": float("nan")}, "--its-hub-timeout must be >= 0"),
    ],
)
def test_unusable_arguments_say_which(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bench.check_args(options(**changes))


def test_bad_particles_on_the_command_line_exit_2_without_a_traceback() -> None:
    p = ponder("bench", "its-hub", "--particles", "4,0")
    assert p.returncode == 2 and "--particles needs counts >= 1" in p.stderr
    assert "Traceback" not in p.stderr


def test_missing_peers_name_make_peers(small_model: str, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "PONDER_PEERS": str(tmp_path)}
    p = ponder(
        "bench", "its-hub", "--model", small_model, "--systems", "its-hub",
        "--llama-server", str(tmp_path / "llama-server"), env=env,
    )  # fmt: skip
    assert p.returncode == 2 and "make peers" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "llama-server").write_text("")  # a server, but no venv with its_hub
    p = ponder(
        "bench", "its-hub", "--model", small_model, "--systems", "its-hub",
        "--llama-server", str(tmp_path / "llama-server"), env=env,
    )  # fmt: skip
    assert p.returncode == 2 and "its_hub" in p.stderr and "make peers" in p.stderr


METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1234
# HELP llamacpp:prompt_seconds_total Prompt process time
# TYPE llamacpp:prompt_seconds_total counter
llamacpp:prompt_seconds_total 2.5
llamacpp:tokens_predicted_total 567
llamacpp:requests_processing{slot="0"} 1
llamacpp:requests_processing{slot="1"} 2
"""


def test_metrics_are_read_by_name_with_labels_summed() -> None:
    m = bench.parse_metrics(METRICS)
    assert m["llamacpp:prompt_tokens_total"] == 1234
    assert m["llamacpp:prompt_seconds_total"] == 2.5
    assert m["llamacpp:tokens_predicted_total"] == 567
    assert m["llamacpp:requests_processing"] == 3
    assert bench.parse_metrics("") == {}


def test_peer_tokens_are_the_counters_differences() -> None:
    before = bench.parse_metrics(METRICS)
    after = {**before, bench.PROMPT_COUNTER: 2000.0, bench.PREDICTED_COUNTER: 600.0}
    assert bench.counted(before, after) == {
        "tokens_generated": 33,
        "prompt_tokens_computed": 766,
    }
    with pytest.raises(RuntimeError, match="--metrics"):
        bench.counted({}, {"llamacpp:requests_processing": 0.0})


def _row(system: str, particles: int, correct: list[bool], seconds: float) -> dict[str, object]:
    n = len(correct)
    outcomes = [
        {
            "correct": c,
            "seconds": seconds / n,
            "tokens_generated": 1000 // n,
            "prompt_tokens_computed": 20000 // n,
            "judge_fallbacks": int(i == 0),
        }
        for i, c in enumerate(correct)
    ]
    return bench.summarize(system, particles, outcomes)


def test_rows_carry_wilson_intervals_and_the_speedup_per_particle_count() -> None:
    rows = [
        _row("ponder", 4, [True, True, False, True], 10.0),
        _row("its-hub", 4, [True, False, False, True], 25.0),
        _row("ponder", 8, [True] * 4, 20.0),
    ]
    p4 = rows[0]
    assert p4["accuracy"] == 0.75 and p4["correct"] == 3 and p4["problems"] == 4
    assert p4["wilson_95"] == list(wilson_interval(3, 4))
    assert p4["seconds"] == pytest.approx(10.0)
    # its_hub at 8 particles was not run: no ratio for 8
    assert bench.speedups(rows) == {4: pytest.approx(2.5)}
    table = bench.format_table(rows).splitlines()
    assert table[0].startswith("| system | particles | accuracy [95% Wilson]")
    low, high = wilson_interval(3, 4)
    assert table[2] == (
        f"| ponder | 4 | 3/4 = 0.75 [{low:.2f}, {high:.2f}] | 10.0 | 2.5 | 1,000 | 20,000 | 1 "
        "| 2.50x |"
    )
    assert table[3].startswith("| its-hub | 4 | 2/4 = 0.50") and table[3].endswith("|  |")
    assert table[4].endswith("|  |")  # ponder at 8: nothing to compare with


def test_a_problem_stopped_at_the_time_limit_is_counted_and_named() -> None:
    row = _row("its-hub", 4, [True, False, False], 30.0)
    assert row["timed_out"] == 0 and "stopped" not in bench.format_table([row])
    row["outcomes"][2]["timed_out"] = True
    row = bench.summarize("its-hub", 4, row["outcomes"])
    assert row["timed_out"] == 1 and row["correct"] == 1
    assert "1/3 = 0.33 [" in bench.format_table([row])
    assert "(1 stopped at the time limit) | 30.0 |" in bench.format_table([row])


def test_counters_are_read_once_the_server_is_idle() -> None:
    busy = iter([2.0, 1.0, 0.0])
    reads: list[float] = []

    def counters() -> dict[str, float]:
        reads.append(next(busy))
        return {"llamacpp:requests_processing": reads[-1]}

    bench.wait_idle(counters, poll=0.0)
    assert reads == [2.0, 1.0, 0.0]
    with pytest.raises(RuntimeError, match="still busy"):
        bench.wait_idle(lambda: {"llamacpp:requests_processing": 1.0}, limit=0.0, poll=0.0)


def test_the_peer_server_gets_one_slot_per_particle_and_its_counters() -> None:
    args = argparse.Namespace(threads=2, n_ctx=16384, flash_attn="on", peer_chat_template="chatml")
    cmd = bench.server_command("llama-server", Path("m.gguf"), 8080, 4, args)
    pairs = dict(zip(cmd[1::2], cmd[2::2], strict=False))
    assert pairs["--parallel"] == "4" and pairs["-c"] == "16384" and pairs["-t"] == "2"
    assert "--metrics" in cmd and cmd[cmd.index("--flash-attn") + 1] == "on"
    # chats rendered with the template ponder's engine uses, by the engine that continues
    # a final assistant message
    assert "--jinja" in cmd and cmd[cmd.index("--chat-template") + 1] == "chatml"


class _Templates(http.server.BaseHTTPRequestHandler):
    """A stand-in for llama-server's /apply-template that renders as ``rendered`` says."""

    rendered: ClassVar[Callable[[list[dict[str, str]]], str]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = json.dumps({"prompt": type(self).rendered(body["messages"])}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def _chatml(messages: list[dict[str, str]], system: str = "") -> str:
    """ChatML with the last (assistant) message left open, as llama-server continues it."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    turns = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages[:-1]]
    return head + "".join(turns) + f"<|im_start|>assistant\n{messages[-1]['content']}"


@pytest.mark.parametrize(
    ("system", "same"), [("", True), ("You are a helpful AI assistant named SmolLM", False)]
)
def test_a_peer_must_render_the_prompts_ponder_renders(
    small_model: str, system: str, same: bool
) -> None:
    from ponder import models
    from ponder.benchmarks.engine_bench import same_prompts

    handler = type("H", (_Templates,), {"rendered": staticmethod(lambda m: _chatml(m, system))})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        if same:
            same_prompts(base, models.resolve(small_model))
        else:  # the model's own Jinja template adds a system message ponder does not send
            with pytest.raises(ValueError, match="renders chats differently.*--peer-chat-templ"):
                same_prompts(base, models.resolve(small_model))
    finally:
        server.shutdown()
        server.server_close()


def test_a_continued_reply_is_the_new_text_only() -> None:
    pytest.importorskip("its_hub")
    from its_hub.api.types import ChatMessage

    from ponder.benchmarks.itshub_driver import _new_text

    asked = [
        ChatMessage("user", "Count to 3, a number a paragraph."),
        ChatMessage("assistant", "1\n\n2\n\n"),
    ]
    # llama-server repeats the assistant text it continues; vLLM and ponder do not
    assert _new_text(asked, {"role": "assistant", "content": "1\n\n2\n\n3"})["content"] == "3"
    assert _new_text(asked, {"role": "assistant", "content": "3"})["content"] == "3"
    first = [ChatMessage("user", "1\n\n")]  # nothing continued: the reply as it is
    assert _new_text(first, {"role": "assistant", "content": "1\n\n2"})["content"] == "1\n\n2"


DRIVER_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
import itshub_driver as d
from its_hub.api.types import ChatMessage
where = dict(endpoint="http://127.0.0.1:9/v1", api_key="u", model_name="m")
hi = [ChatMessage("user", "hi")]
plain = d.ContinuingModel(**where)._prepare_request_data(hi, temperature=0.8)
lm = d.ContinuingModel(**where, sampling=json.loads(sys.argv[2]))
matched = lm._prepare_request_data(hi, temperature=0.8)
print(json.dumps([plain, matched]))
"""


@pytest.mark.skipif(not bench.peers_python().exists(), reason="its_hub not installed (make peers)")
def test_its_hub_requests_carry_ponders_sampling() -> None:
    # its_hub sends only the temperature; llama-server would fill in top-k 40, top-p 0.95 and
    # min-p 0.05, so the driver sends ponder's (none of them) unless --peer-sampling server
    run = subprocess.run(
        [str(bench.peers_python()), "-c", DRIVER_CHECK, str(bench.DRIVER.parent),
         json.dumps(bench.PLAIN_SAMPLING)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    plain, matched = json.loads(run.stdout)
    assert plain["temperature"] == 0.8 and "top_k" not in plain and "min_p" not in plain
    assert matched == {**plain, "top_k": 0, "top_p": 1.0, "min_p": 0.0}


def _settings(**changes: object) -> dict[str, object]:
    return {"model": "m", "limit": 40, "particles": [4, 8], "systems": ["ponder"], "seed": 0,
            "max_tokens": 256, **changes}  # fmt: skip


def test_the_ledger_keeps_outcomes_and_refuses_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "b.rows.jsonl"
    assert bench.read_ledger(path, _settings()) == []
    ledger = bench.Ledger(path, _settings())
    ledger.record("ponder", 4)({"id": "a", "correct": True, "seconds": 1.0})
    ledger.record("its-hub", 4)({"id": "a", "correct": False, "seconds": 9.0})
    # another part of the same comparison: other counts, systems and limit are fine
    kept = bench.read_ledger(path, _settings(limit=10, particles=[8], systems=["its-hub"]))
    assert [(o["system"], o["particles"], o["id"]) for o in kept] == [
        ("ponder", 4, "a"),
        ("its-hub", 4, "a"),
    ]
    with pytest.raises(ValueError, match=r"other settings \(max_tokens, seed\)"):
        bench.read_ledger(path, _settings(seed=1, max_tokens=128))
    # a setting added later (judge_inline): a ledger written before it used its default
    assert len(bench.read_ledger(path, _settings(judge_inline=False))) == 2
    with pytest.raises(ValueError, match=r"other settings \(judge_inline\)"):
        bench.read_ledger(path, _settings(judge_inline=True))
    # ponder's particles end at "The answer is" since stop 33: an older ledger is another
    # comparison (--no-finish-on reproduces it)
    with pytest.raises(ValueError, match=r"other settings \(finish_on\)"):
        bench.read_ledger(path, _settings(finish_on=True))
    with pytest.raises(ValueError, match=r"other settings \(peer_sampling\)"):
        bench.read_ledger(path, _settings(peer_sampling="ponder"))
    # a line cut short by a kill is dropped, and the next outcome starts a line of its own
    with path.open("a") as f:
        f.write('{"system": "ponder", "partic')
    assert len(bench.read_ledger(path, _settings())) == 2
    bench.Ledger(path, _settings()).record("ponder", 8)({"id": "b", "correct": True})
    assert [o["id"] for o in bench.read_ledger(path, _settings())] == ["a", "a", "b"]
    # a bad line elsewhere is an error that names it, never silently skipped
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"b.rows.jsonl:2: not a JSON line"):
        bench.read_ledger(path, _settings())
    path.write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="not the settings line"):
        bench.read_ledger(path, _settings())


def test_the_ledger_sits_beside_the_output() -> None:
    assert bench.rows_path(argparse.Namespace(rows="", out="x/b.json")) == Path("x/b.rows.jsonl")
    assert bench.rows_path(argparse.Namespace(rows="r.jsonl", out="b.json")) == Path("r.jsonl")
    assert bench.rows_path(argparse.Namespace(rows="", out="")) is None


def test_ponder_records_each_problem_and_a_second_run_does_only_the_rest(
    small_model: str, tmp_path: Path
) -> None:
    out = tmp_path / "itshub.json"
    common = ["bench", "its-hub", "--model", small_model, "--systems", "ponder",
              "--particles", "2", "--max-tokens", "16", "--out", str(out)]  # fmt: skip
    argv = [*common, "--max-steps", "2"]
    first = ponder(*argv, "--limit", "1")
    assert first.returncode == 0, first.stderr
    ledger = tmp_path / "itshub.rows.jsonl"
    [head, one] = [json.loads(x) for x in ledger.read_text().splitlines()]
    assert head["settings"]["particles"] == [2] and one["system"] == "ponder"
    assert one["tokens_generated"] > 0 and one["seconds"] > 0
    second = ponder(*argv, "--limit", "2")
    assert second.returncode == 0, second.stderr
    assert "(1 from" in second.stderr  # the first problem came from the ledger
    lines = [json.loads(x) for x in ledger.read_text().splitlines()[1:]]
    assert [o["id"] for o in lines] == [one["id"], lines[1]["id"]] and lines[1]["id"] != one["id"]
    [row] = json.loads(out.read_text())["rows"]
    assert row["problems"] == 2 and row["outcomes"][0] == {
        k: v for k, v in one.items() if k not in ("system", "particles")
    }
    assert row["tokens_generated"] == sum(o["tokens_generated"] for o in lines)
    # a later part: --start 2 runs the third problem alone, on the same ledger
    part = ponder(*argv, "--limit", "3", "--start", "2")
    assert part.returncode == 0, part.stderr
    [third] = [json.loads(x) for x in ledger.read_text().splitlines()[3:]]
    assert third["id"] not in {o["id"] for o in lines}
    [row] = json.loads(out.read_text())["rows"]
    assert row["problems"] == 1 and row["outcomes"][0]["id"] == third["id"]
    # other settings on the same ledger: refused by name, the ledger untouched
    before = ledger.read_text()
    third = ponder(*common, "--max-steps", "3", "--limit", "2")
    assert third.returncode == 2 and "other settings (max_steps)" in third.stderr
    inline = ponder(*argv, "--limit", "2", "--judge-inline")
    assert inline.returncode == 2 and "other settings (judge_inline)" in inline.stderr
    assert ledger.read_text() == before
    assert head["settings"]["judge_inline"] is False and head["settings"]["finish_on"] is True
    assert head["settings"]["peer_sampling"] == "ponder"
    # on a ledger of its own, the inline judge runs and is named in the settings
    alone = tmp_path / "inline.json"
    inline = ponder(*argv[:-4], "--out", str(alone), "--max-steps", "2", "--limit", "1",
                    "--judge-inline")  # fmt: skip
    assert inline.returncode == 0, inline.stderr
    [head, one] = [json.loads(x) for x in alone.with_suffix(".rows.jsonl").read_text().splitlines()]
    assert head["settings"]["judge_inline"] is True and one["prompt_tokens_computed"] > 0


HAVE_PEERS = find_llama_server() is not None and bench.peers_python().exists()


@pytest.mark.skipif(not HAVE_PEERS, reason="llama-server / its_hub not installed (make peers)")
def test_both_systems_answer_and_count_their_tokens(small_model: str, tmp_path: Path) -> None:
    out = tmp_path / "itshub.json"
    p = ponder(
        "bench", "its-hub", "--model", small_model, "--limit", "1", "--particles", "2",
        "--max-tokens", "24", "--max-steps", "2", "--judge-tokens", "12", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    r = json.loads(out.read_text())
    rows = {row["system"]: row for row in r["rows"]}
    assert set(rows) == {"ponder", "its-hub"}
    for row in rows.values():
        assert row["particles"] == 2 and row["problems"] == 1
        assert row["tokens_generated"] > 0 and row["prompt_tokens_computed"] > 0
        assert row["seconds"] > 0 and 0 <= row["wilson_95"][0] <= row["wilson_95"][1] <= 1
    [its] = rows["its-hub"]["outcomes"]
    assert isinstance(its["answer"], str) and its["answer"]
    assert 1 <= its["steps"] <= 2  # its_hub's step cap is set to ponder's
    # how the search ended: every final particle's steps and log-weight
    assert len(its["particle_steps"]) == len(its["log_weights"]) == 2
    assert its["steps"] in its["particle_steps"]
    assert all(1 <= s <= 2 for s in its["particle_steps"])
    assert all(abs(w) <= 16.2 for w in its["log_weights"])  # logit of a clipped [0, 1] score
    assert r["speedup"]["2"] == pytest.approx(
        rows["its-hub"]["seconds"] / rows["ponder"]["seconds"]
    )
    assert "| ponder | 2 |" in p.stdout and "| its-hub | 2 |" in p.stdout
    # both systems' outcomes are in the ledger, its_hub's with its counters per problem
    lines = (tmp_path / "itshub.rows.jsonl").read_text().splitlines()[1:]
    assert sorted(json.loads(x)["system"] for x in lines) == ["its-hub", "ponder"]
    assert rows["its-hub"]["tokens_generated"] == its["tokens_generated"] > 0


@pytest.mark.skipif(not HAVE_PEERS, reason="llama-server / its_hub not installed (make peers)")
def test_its_hub_stopped_at_the_time_limit_is_recorded_wrong_with_its_counts(
    small_model: str, tmp_path: Path
) -> None:
    out = tmp_path / "itshub.json"
    p = ponder(
        "bench", "its-hub", "--model", small_model, "--limit", "1", "--particles", "2",
        "--max-tokens", "64", "--max-steps", "8", "--systems", "its-hub",
        "--its-hub-timeout", "0.5", "--out", str(out),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    [row] = json.loads(out.read_text())["rows"]
    [its] = row["outcomes"]
    assert its["timed_out"] is True and its["correct"] is False and its["answer"] == ""
    assert row["timed_out"] == 1 and 0.5 <= its["seconds"] < 30
    # what its_hub had sent before it was stopped is still counted (read once idle)
    assert its["prompt_tokens_computed"] > 0
    assert "(1 stopped at the time limit)" in p.stdout


@pytest.mark.skipif(not HAVE_PEERS, reason="llama-server / its_hub not installed (make peers)")
@pytest.mark.parametrize("template", ["", "chatml"])
def test_llama_server_renders_ponders_prompts_only_with_the_peer_template(
    small_model: str, template: str
) -> None:
    from ponder import models
    from ponder.benchmarks._procs import free_port, running
    from ponder.benchmarks.engine_bench import llama_server_command, same_prompts

    model, port = models.resolve(small_model), free_port()
    cmd = llama_server_command(str(find_llama_server()), model, port, 1, 1024, 1)
    cmd += ["--jinja", "--chat-template", template] if template else []
    with running(cmd, f"http://127.0.0.1:{port}/health"):
        if template:
            same_prompts(f"http://127.0.0.1:{port}", model)
        else:  # its default, the model's own Jinja template, adds a system message
            with pytest.raises(ValueError, match="renders chats differently"):
                same_prompts(f"http://127.0.0.1:{port}", model)
