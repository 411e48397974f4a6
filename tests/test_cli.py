import json
import subprocess
import sys


def ponder(*args):
    return subprocess.run(
        [sys.executable, "-m", "ponder.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_solve_json(small_model):
    p = ponder(
        "solve",
        "What is 3 plus 4?",
        "--model",
        small_model,
        "--strategy",
        "vote",
        "--budget",
        "3",
        "--max-tokens",
        "32",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["strategy"] == "self-consistency" and len(out["candidates"]) == 3
    assert out["usage"]["tokens_generated"] > 0


def test_solve_text_output(small_model):
    p = ponder(
        "solve", "Say hi.", "--model", small_model, "--strategy", "greedy", "--max-tokens", "8"
    )
    assert p.returncode == 0, p.stderr
    assert "answer:" in p.stdout and "usage:" in p.stdout


def test_text_output_says_why_auto_stopped(capsys):
    from ponder.cli.solve import print_result
    from ponder.types import Result, Usage

    reason = "stage 0 gave up: truncated 1 >= 1; majority over what was drawn"
    print_result(Result("4", None, (), Usage(), "auto", {"reason": reason}))
    assert f"why: {reason}" in capsys.readouterr().out
    print_result(Result("4", None, (), Usage(), "greedy"))
    assert "why:" not in capsys.readouterr().out


def test_bad_model_is_a_clear_error():
    p = ponder("solve", "hi", "--model", "/does/not/exist.gguf")
    assert p.returncode == 2
    assert "neither a known model" in p.stderr
    assert "Traceback" not in p.stderr


def test_models_and_strategies_lists():
    p = ponder("models", "list")
    assert p.returncode == 0 and "smollm2-135m-instruct" in p.stdout
    p = ponder("strategies")
    assert p.returncode == 0 and "vote" in p.stdout


def test_flash_attn_option_reaches_the_engine():
    import argparse

    from ponder.cli.common import add_engine_arguments, engine_options
    from ponder.engines.llamacpp import native

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert "flash_attn" not in engine_options(parser.parse_args([]))
    one = engine_options(parser.parse_args([]), one_problem=True)["flash_attn"]
    assert one is native.one_problem_flash_attn()
    assert engine_options(parser.parse_args(["--flash-attn", "on"]), one_problem=True)["flash_attn"]
    assert engine_options(parser.parse_args(["--flash-attn", "on"]))["flash_attn"] is True
    assert engine_options(parser.parse_args(["--flash-attn", "off"]))["flash_attn"] is False
    remote = parser.parse_args(
        ["--engine", "openai", "--base-url", "http://x", "--flash-attn", "on"]
    )
    assert "flash_attn" not in engine_options(remote)


def test_exact_mode_from_the_command_line(small_model):
    args = ["--model", small_model, "--strategy", "greedy", "--max-tokens", "12", "--json"]
    a = ponder("solve", "Say hi.", *args, "--flash-attn", "on")
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["usage"]["tokens_generated"] > 0
    bad = ponder("solve", "Say hi.", *args, "--flash-attn", "maybe")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_eval_and_bench_command_lines(tmp_path):
    from ponder.cli import build_parser

    args = build_parser().parse_args(["bench", "engine", "--ns", "1,4", "--skip", "server"])
    assert (args.suite, args.ns, args.skip) == ("engine", "1,4", "server")
    args = build_parser().parse_args(
        ["eval", "arithmetic", "--strategies", "greedy,vote[temperature=1.0]", "--level", "3"]
    )
    assert (args.task, args.budgets, args.task__level) == ("arithmetic", "1,2,4,8,16", 3)
    # each command takes only its own options: no task flags on a benchmark, no
    # benchmark flags on an evaluation
    for argv in (["bench", "engine", "--level", "3"], ["eval", "arithmetic", "--ns", "4"]):
        p = ponder(*argv)
        assert p.returncode == 2 and "unrecognized arguments" in p.stderr, argv
    p = ponder("eval", "nope", "--db", str(tmp_path / "r.sqlite"))
    assert p.returncode == 2 and "invalid choice: 'nope'" in p.stderr and "arithmetic" in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    p = ponder("eval", "jsonl", "--path", str(bad))
    assert p.returncode == 2 and "line 1: no field 'answer'" in p.stderr
    p = ponder("eval", "arithmetic", "--set", "nosuch=1")
    assert p.returncode == 2 and "has a setting 'nosuch'" in p.stderr
    p = ponder("eval", "arithmetic", "--level", "9")
    assert p.returncode == 2 and "level must be one of" in p.stderr


def test_old_bench_task_spelling_still_works(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    p = ponder("bench", "jsonl", "--file", str(bad))
    assert "`ponder bench jsonl` is now `ponder eval jsonl`" in p.stderr
    assert p.returncode == 2 and "line 1: no field 'answer'" in p.stderr


def test_task_options_come_from_the_task(tmp_path):
    p = ponder("eval", "humaneval", "--help")
    assert p.returncode == 0 and "--workers" in p.stdout and "--level" not in p.stdout
    p = ponder("eval", "arithmetic", "--help")
    assert "--level" in p.stdout and "--ns" not in p.stdout
    p = ponder("tasks")
    assert p.returncode == 0 and "humaneval" in p.stdout


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    p = ponder("solve", "hi", "--model", str(bad), "--max-tokens", "4")
    assert p.returncode == 2, p.stderr
    assert "could not load" in p.stderr and "Traceback" not in p.stderr


def test_pool_options_are_checked_before_any_model_loads(tmp_path):
    db = str(tmp_path / "r.sqlite")
    p = ponder("eval", "arithmetic", "--pool-scorers", "judge", "--db", db)
    assert p.returncode == 2 and "--pool-scorers needs --pool N" in p.stderr
    p = ponder("eval", "arithmetic", "--pool", "4", "--scorer", "judge", "--db", db)
    assert p.returncode == 2 and "--pool-scorers" in p.stderr
    # scorer options set the one pool scorer; with two, which one is meant is not guessed
    two = ["--pool-scorers", "visible-tests,judge", "--scorer-set", "inline=true"]
    p = ponder("eval", "arithmetic", "--pool", "4", *two, "--db", db)
    assert p.returncode == 2 and "--scorer-set sets one pool scorer's options" in p.stderr
    p = ponder("eval", "arithmetic", "--pool", "4", "--set", "nosuch=1", "--db", db)
    assert p.returncode == 2 and "has no setting 'nosuch'" in p.stderr
    p = ponder("eval", "arithmetic", "--pool", "4", "--set", "temperature=-1", "--db", db)
    assert p.returncode == 2 and "temperature" in p.stderr, p.stderr


def test_results_commands(tmp_path):
    p = ponder("results", "build", "--data", str(tmp_path))
    assert p.returncode == 2 and "no *.jsonl.gz files" in p.stderr
    p = ponder("results", "export", str(tmp_path / "none.sqlite"), str(tmp_path / "x.jsonl.gz"))
    assert p.returncode == 2 and "no results database" in p.stderr
