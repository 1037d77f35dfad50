"""Where candidates are evaluated: in this process, or on Ray workers.

Choice (documented in docs/design.md): the runner keeps the ask/tell loop and the store in
the driver; Ray only *evaluates*. Each Ray worker is an actor that builds the evaluation
context (model, data subsets, space, profiles) once from the experiment config and then
evaluates candidates sent to it; the driver keeps up to ``workers`` candidates in flight. An
actor that dies (a candidate crashed its process) is recorded as that candidate's failure and
replaced, and the search continues. Ray Tune is not used to host the loop: its searchers and
schedulers would take over the record that the Optuna store already keeps.

``--workers N`` starts a local Ray with N CPUs; ``--address`` joins an existing cluster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from automc.config import parse_config
from automc.errors import UserError
from automc.search.candidate import FAILED, Candidate
from automc.search.context import Context, build_context, evaluate_candidate


class Executor(Protocol):
    """Where the loop sends candidates: ``submit`` up to ``slots`` at once, collect each with
    ``next_done`` (in completion order), ``close`` at the end."""

    slots: int

    def submit(self, number: int, params: Mapping[str, Any]) -> None: ...

    def pending(self) -> int: ...

    def next_done(self) -> Candidate: ...

    def close(self) -> None: ...


class SequentialExecutor:
    """Evaluates one candidate at a time in this process."""

    slots = 1

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._queue: list[tuple[int, dict[str, Any]]] = []

    def submit(self, number: int, params: Mapping[str, Any]) -> None:
        self._queue.append((number, dict(params)))

    def pending(self) -> int:
        return len(self._queue)

    def next_done(self) -> Candidate:
        number, params = self._queue.pop(0)
        return evaluate_candidate(self.ctx, number, params)

    def close(self) -> None:
        pass


class _Worker:
    """Ray actor body: one evaluation context, many candidates."""

    def __init__(self, config: dict[str, Any], run_dir: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.ctx = build_context(parse_config(config), Path(run_dir), measure_base=False)

    def evaluate(self, number: int, params: dict[str, Any], base_metrics: dict[str, float]) -> dict[str, Any]:
        self.ctx.base_metrics = base_metrics
        return evaluate_candidate(self.ctx, number, params).to_dict()


class RayExecutor:
    """Evaluates up to ``workers`` candidates at once on Ray actors."""

    def __init__(self, ctx: Context, config: dict[str, Any], run_dir: Path, *, workers: int, address: str | None = None, threads_per_worker: int = 1) -> None:
        import ray

        if workers < 1:
            raise UserError(f"--workers must be >= 1, got {workers}", field="workers")
        self.ray = ray
        self.ctx = ctx
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(num_cpus=workers * threads_per_worker, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except ConnectionError as exc:
                raise UserError(f"cannot join the Ray cluster at {address!r} ({exc}): check --address (e.g. ray://head:10001 or HOST:6379)") from None
        self._owns_ray = True
        self.slots = workers
        self._actor_cls = ray.remote(num_cpus=threads_per_worker, max_restarts=0)(_Worker)
        self._args = (config, str(run_dir.resolve()), threads_per_worker)
        env = {"PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)}
        self._options = {"runtime_env": {"env_vars": env}}
        self._idle = [self._new_actor() for _ in range(workers)]
        self._running: dict[Any, tuple[Any, int, dict[str, Any]]] = {}

    def _new_actor(self) -> Any:
        return self._actor_cls.options(**self._options).remote(*self._args)

    def submit(self, number: int, params: Mapping[str, Any]) -> None:
        actor = self._idle.pop()
        ref = actor.evaluate.remote(number, dict(params), dict(self.ctx.base_metrics))
        self._running[ref] = (actor, number, dict(params))

    def pending(self) -> int:
        return len(self._running)

    def next_done(self) -> Candidate:
        [ref], _ = self.ray.wait(list(self._running), num_returns=1)
        actor, number, params = self._running.pop(ref)
        try:
            result = Candidate.from_dict(self.ray.get(ref))
            self._idle.append(actor)
            return result
        except self.ray.exceptions.RayActorError as exc:
            self._idle.append(self._new_actor())  # replace the dead worker
            reason = str(exc).strip().splitlines()[0][:300]
            return Candidate(number, params, state=FAILED, error=f"worker died while evaluating: {reason}")
        except self.ray.exceptions.RayTaskError as exc:
            self._idle.append(actor)
            return Candidate(number, params, state=FAILED, error=f"worker error: {str(exc.cause if hasattr(exc, 'cause') else exc)[:300]}")

    def close(self) -> None:
        for actor in self._idle + [a for a, _, _ in self._running.values()]:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        if self._owns_ray:
            self.ray.shutdown()


