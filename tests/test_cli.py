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

    from ponder.cli import add_engine_arguments, engine_options
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
