"""Evaluations over a Ray cluster: cells sharded over actors, one engine per actor.

``ponder bench TASK --ray auto|local|ADDRESS`` keeps everything of a local run — the grid,
the resumable SQLite store (written by the driver only, one cell at a time as results
arrive), the run's configuration and id, the progress bar — and only changes where cells
execute: on ``--ray-actors`` Ray actors, each holding its own engine (the embedded model,
loaded on the actor's node, or an OpenAI-compatible endpoint: with several ``--base-url``
the actors take them in turn). Each actor runs many cells at once so that their requests
share its engine's batches. A run interrupted on the cluster is resumed like a local one,
locally or on Ray.

Ray is optional: ``pip install 'ponder[ray]'``. Every node needs ponder installed (and, for
the embedded engine, the model pulled or pullable: ``ponder models pull NAME``).
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from ponder.engines.base import EngineError
from ponder.evals.runner import StrategySpec, execute_cell, strategy_for
from ponder.evals.store import CellRecord
from ponder.scoring import ScorerError
from ponder.types import Problem


def connect(address: str) -> None:
    """Join (or start) a Ray instance: ``local`` starts one on this machine, ``auto`` joins a
    running cluster and falls back to a local instance, anything else is a cluster address
    (``ray://host:10001`` or ``host:6379``)."""
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'ponder[ray]'") from None
    if ray.is_initialized():
        return
    local: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address == "local":
        ray.init(**local)
    elif address == "auto":
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:
            ray.init(**local)
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:
            raise ValueError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None


class CellActor:
    """Holds one engine, the task's problems and the built strategies; runs cells."""

    def __init__(
        self,
        engine_options: dict[str, Any],
        task_name: str,
        task_options: dict[str, Any],
        task_seed: int,
        limit: int | None,
        specs: list[StrategySpec],
        seeds: list[int],
        scorer: str | None,
        scorer_options: dict[str, Any],
    ) -> None:
        from ponder.api import load_engine
        from ponder.scoring import create_scorer
        from ponder.tasks import create_task

        options = dict(engine_options)
        model = options.pop("model", None)
        self.engine = load_engine(model, **options)
        self.task = create_task(task_name, **task_options)
        self.problems = {p.id: p for p in self.task.problems(limit, seed=task_seed)}
        self.strategies = {
            (s.label, seed): strategy_for(s, self.task, seed) for s in specs for seed in seeds
        }
        self.scorer = create_scorer(scorer, self.engine, **scorer_options) if scorer else None

    def node(self) -> str:
        """Where this actor runs (host name and process id)."""
        return f"{os.uname().nodename}:{os.getpid()}"

    async def run(self, problem_id: str, label: str, budget: int, seed: int) -> CellRecord | str:
        """The cell's record, or its failure as text (the driver records it), as the local
        runner does."""
        strategy = self.strategies[(label, seed)]
        try:
            return await execute_cell(
                self.task, self.problems[problem_id], label, budget, seed, strategy, self.engine,
                self.scorer,
            )  # fmt: skip
        except (EngineError, ScorerError, ValueError) as exc:
            return f"{type(exc).__name__}: {exc}"


class RayExecutor:
    """A ``CellExecutor`` that sends each cell to the least busy of ``actors`` Ray actors."""

    def __init__(
        self,
        actors: int,
        engine_options: list[dict[str, Any]],
        concurrency: int,
        cpus_per_actor: float,
        **actor_args: Any,
    ) -> None:
        import ray

        if actors < 1:
            raise ValueError(f"--ray-actors must be >= 1, got {actors}")
        remote = ray.remote(CellActor).options(
            num_cpus=cpus_per_actor, max_concurrency=max(1, concurrency)
        )
        options = itertools.cycle(engine_options)
        self.actors: list[Any] = [remote.remote(next(options), **actor_args) for _ in range(actors)]
        self.busy = [0] * actors
        # Fail here, clearly, if an actor cannot build its engine, task or scorer.
        try:
            self.nodes = ray.get([a.node.remote() for a in self.actors])
        except ray.exceptions.RayActorError as exc:
            raise ValueError(f"a Ray actor failed to start: {exc}") from None

    async def __call__(
        self, problem: Problem, spec: StrategySpec, budget: int, seed: int
    ) -> CellRecord:
        i = min(range(len(self.actors)), key=self.busy.__getitem__)
        self.busy[i] += 1
        try:
            out = await self.actors[i].run.remote(problem.id, spec.label, budget, seed)
        finally:
            self.busy[i] -= 1
        if isinstance(out, str):
            raise EngineError(f"on Ray actor {self.nodes[i]}: {out}")
        assert isinstance(out, CellRecord)
        return out

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
