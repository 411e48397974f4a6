"""Where ponder's particle filter spends its time at the its_hub bench's settings.

Run from the repository root: ``.venv/bin/python results/bench/pf-phases-probe.py 30,2 8``
(problem indices of arithmetic level 2, task seed 0; particles). It wraps the filter's two
engine phases, generating the next steps and asking the judge about them, and prints per
round: the phase, its seconds, the engine's decode steps, the tokens generated (or the
prompt tokens the judge computed), the longest step in tokens and the number of steps.
Occupancy is generated tokens over decode steps: how many of the particles a decode step
carried on average. Used for docs/BENCHMARKS.md section 6 (stop 37).
"""

import asyncio
import json
import sys
import time
from typing import Any

import ponder.strategies.particle_filter as pf
from ponder.api import load_engine, solve_async
from ponder.benchmarks.itshub_bench import DELIMITER, STOP_TOKEN, STRATEGY, TEMPERATURE
from ponder.scoring import create_scorer
from ponder.tasks import create_task

STEP_TOKENS, STEPS = 256, 40  # the bench's --max-tokens and --max-steps defaults
CONFIG = {  # as the bench's run_ponder configures ponder's side
    "delimiter": DELIMITER,
    "max_step_tokens": STEP_TOKENS,
    "max_steps": STEPS,
    "max_tokens": STEPS * STEP_TOKENS,
    "temperature": TEMPERATURE,
    "finish_on": STOP_TOKEN,
}


def main() -> None:
    ids = [int(x) for x in sys.argv[1].split(",")]
    particles = int(sys.argv[2])
    problems = create_task("arithmetic", level=2).problems(40)
    engine = load_engine("qwen2.5-coder-0.5b-instruct", flash_attn="on")
    judge = create_scorer("judge", engine, inline=False)
    log: list[tuple[Any, ...]] = []
    generate, score = pf.generate_steps, pf.score_nodes

    def decode_steps() -> int:
        return int(engine.stats()["steps"])  # type: ignore[attr-defined]

    async def timed_generate(*args: Any, **kwargs: Any) -> Any:
        before, t = decode_steps(), time.perf_counter()
        steps, usage = await generate(*args, **kwargs)
        tokens = [s.tokens for group in steps for s in group]
        seconds = time.perf_counter() - t
        log.append(("gen", seconds, decode_steps() - before, sum(tokens), max(tokens), len(tokens)))
        return steps, usage

    async def timed_score(*args: Any, **kwargs: Any) -> Any:
        before, t = decode_steps(), time.perf_counter()
        usage = await score(*args, **kwargs)
        seconds = time.perf_counter() - t
        log.append(("score", seconds, decode_steps() - before, usage.prompt_tokens_computed, 0, 0))
        return usage

    pf.generate_steps, pf.score_nodes = timed_generate, timed_score  # type: ignore[assignment]
    try:
        for i in ids:
            log.clear()
            t = time.perf_counter()
            result = asyncio.run(
                solve_async(problems[i], engine, STRATEGY, particles, judge, **CONFIG)
            )
            gen = [x for x in log if x[0] == "gen"]
            tokens, steps = sum(x[3] for x in gen), sum(x[2] for x in gen)
            summary = {
                "problem": i,
                "seconds": round(time.perf_counter() - t, 1),
                "rounds": len(gen),
                "gen_s": round(sum(x[1] for x in gen), 1),
                "score_s": round(sum(x[1] for x in log if x[0] == "score"), 1),
                "gen_tokens": tokens,
                "gen_engine_steps": steps,
                "occupancy": round(tokens / max(1, steps), 2),
                "sum_longest_step": sum(x[4] for x in gen),
                "usage": str(result.usage),
            }
            print(json.dumps(summary), flush=True)
            for x in log:
                print("  ", x, flush=True)
    finally:
        engine.close()


if __name__ == "__main__":
    main()
