"""Where candidates are evaluated: in this process, or on Ray workers.

Choice (documented in docs/design.md): the runner keeps the ask/tell loop and the store in
the driver; Ray only *evaluates*. Each Ray worker is an actor that builds the evaluation
context (model, data subsets, space, profiles) once from the experiment config, takes the
space's once-per-run statistics from the driver (``SearchSpace.prepared``) and then
evaluates candidates sent to it; the driver keeps up to ``workers`` candidates in flight. An
actor that dies (a candidate crashed its process) is recorded as that candidate's failure and
replaced, and the search continues; one lost with its node (a machine of the cluster gone)
has its candidate evaluated again elsewhere, and the search continues on the nodes left. Ray
Tune is not used to host the loop: its searchers and schedulers would take over the record
that the Optuna store already keeps.

``--workers N`` starts a local Ray with N CPUs; ``--address`` joins an existing cluster.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
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

    def __init__(self, config: dict[str, Any], run_dir: str, threads: int, prepared: dict[str, Any] | None = None) -> None:
        import torch

        torch.set_num_threads(threads)
        self.ctx = build_context(parse_config(config), Path(run_dir), measure_base=False)
        # the driver's once-per-run statistics (e.g. the re-fit's Gram matrices, seconds of
        # CPU), not computed again by every worker; a plugin space without any computes its own
        if prepared:
            self.ctx.space.prepare(prepared)
        else:
            self.ctx.space.prepare()

    def ready(self) -> bool:
        """Resolves once the actor has started (its context built)."""
        return True

    def evaluate(self, number: int, params: dict[str, Any], base_metrics: dict[str, float]) -> dict[str, Any]:
        self.ctx.base_metrics = base_metrics
        return evaluate_candidate(self.ctx, number, params).to_dict()


# how often the driver, waiting only for replacement workers to start, checks that the
# cluster can still place them (a worker may take long to start on a loaded machine: no timeout)
PLACEMENT_CHECK_S = 10.0
# replacement workers failing to start in a row before the search stops (a worker that cannot
# build its context would otherwise be replaced forever)
MAX_START_FAILURES = 3
# evaluations of one candidate lost with their node before it is recorded as failed (one
# that takes every worker down with it is the candidate's doing, whatever Ray calls it)
MAX_RETRIES = 2


def node_lost(exc: BaseException) -> bool:
    """Whether a Ray actor error says the candidate is not at fault: the actor's node died,
    or the actor became unreachable (Ray cannot tell whether the task ran)."""
    import ray

    return isinstance(exc, ray.exceptions.ActorUnavailableError) or "node has died" in str(exc) or bool(getattr(exc, "preempted", False))


@contextlib.contextmanager
def ray_session(workers: int, address: str | None = None, threads_per_worker: int = 1) -> Iterator[None]:
    """Ray for the search's workers: a local Ray with their CPUs, or the cluster at
    ``address``, checked to have room for them before anything runs (one-line errors);
    shut down on exit. The search opens it before building its context, so a wrong address
    or too few CPUs never costs a training run."""
    import ray

    if workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}", field="workers")
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            # "local": a fresh Ray of our own, never a cluster some earlier `ray start` (or a
            # file it left behind) points to
            ray.init(address="local", num_cpus=workers * threads_per_worker, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        raise UserError(f"cannot join the Ray cluster at {address!r} ({exc}): check --address (e.g. ray://head:10001 or HOST:6379)") from None
    try:
        cpus = float(ray.cluster_resources().get("CPU", 0.0))
        if cpus < workers * threads_per_worker:
            raise UserError(f"--workers {workers} needs {workers * threads_per_worker} CPUs, the Ray cluster has {cpus:g}: lower --workers or add nodes", field="workers")
        yield
    finally:
        ray.shutdown()


class RayExecutor:
    """Evaluates up to ``slots`` candidates at once on Ray actors (``workers`` to begin with).

    A worker whose process dies on a candidate (a crash, an OOM kill) records that candidate
    as failed and is replaced. A worker lost with its *node* does not fail its candidate: the
    candidate is reported to ``on_retry`` and evaluated again, under its number, by the next
    free worker; the lost worker is replaced only where the cluster still has room, so the
    search goes on with fewer workers instead of waiting for a node that is gone.
    """

    def __init__(
        self,
        ctx: Context,
        config: dict[str, Any],
        run_dir: Path,
        *,
        workers: int,
        threads_per_worker: int = 1,
        on_retry: Callable[[int, str], None] | None = None,
    ) -> None:
        import ray

        if not ray.is_initialized():
            raise RuntimeError("RayExecutor needs a Ray session: open one with ray_session()")
        self.ray = ray
        self.ctx = ctx
        self.on_retry = on_retry
        self._threads = threads_per_worker
        self._actor_cls = ray.remote(num_cpus=threads_per_worker, max_restarts=0)(_Worker)
        prepared = ctx.space.prepared()  # shipped once through Ray's object store
        self._args = (config, str(run_dir.resolve()), threads_per_worker, ray.put(prepared) if prepared else None)
        env = {"PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH", "")] if p)}
        self._options = {"runtime_env": {"env_vars": env}}
        self._idle = [self._new_actor() for _ in range(workers)]
        self._starting: dict[Any, Any] = {}  # ready ref → replacement actor, until it has started
        self._running: dict[Any, tuple[Any, int, dict[str, Any]]] = {}
        self._backlog: list[tuple[int, dict[str, Any]]] = []  # submitted, waiting for a worker
        self._start_failures = 0  # replacements in a row whose start failed
        self._lost: dict[int, int] = {}  # candidate → workers lost while evaluating it

    @property
    def slots(self) -> int:
        """Workers alive or starting: how many candidates can be in flight."""
        return len(self._idle) + len(self._starting) + len(self._running)

    def _new_actor(self) -> Any:
        return self._actor_cls.options(**self._options).remote(*self._args)

    def _replace(self) -> None:
        """Start a worker in place of a dead one, where the cluster has room for it: its
        CPUs (fewer once a node is lost) hold the workers alive or starting and one more."""
        cpus = float(self.ray.cluster_resources().get("CPU", 0.0))
        if cpus >= (self.slots + 1) * self._threads:
            actor = self._new_actor()
            self._starting[actor.ready.remote()] = actor

    def _drop_unplaceable(self) -> None:
        """Kill the starting workers beyond what the cluster's CPUs can hold (a node lost
        since they were asked for)."""
        room = int(float(self.ray.cluster_resources().get("CPU", 0.0)) // self._threads)
        for ref in list(self._starting)[room:]:
            self.ray.kill(self._starting.pop(ref))

    def submit(self, number: int, params: Mapping[str, Any]) -> None:
        self._backlog.append((number, dict(params)))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._backlog and self._idle:
            number, params = self._backlog.pop(0)
            actor = self._idle.pop()
            ref = actor.evaluate.remote(number, params, dict(self.ctx.base_metrics))
            self._running[ref] = (actor, number, params)

    def pending(self) -> int:
        return len(self._running) + len(self._backlog)

    def next_done(self) -> Candidate:
        while True:
            if not self._running and not self._starting:
                raise RuntimeError(f"no Ray worker is left to evaluate candidate(s) {[n for n, _ in self._backlog]}: the cluster lost its nodes; rerun the search to continue")
            timeout = None if self._running else PLACEMENT_CHECK_S
            done, _ = self.ray.wait(list(self._running) + list(self._starting), num_returns=1, timeout=timeout)
            if not done:  # only replacements pending: give up on those the cluster cannot place
                self._drop_unplaceable()
                continue
            ref = done[0]
            if ref in self._starting:
                actor = self._starting.pop(ref)
                try:
                    self.ray.get(ref)
                    self._idle.append(actor)
                    self._start_failures = 0
                except self.ray.exceptions.RayActorError as exc:
                    self._start_failures += 1
                    if self._start_failures >= MAX_START_FAILURES:  # the worker cannot start at all
                        raise RuntimeError(f"{self._start_failures} Ray workers in a row failed to start: {str(exc).strip().splitlines()[0][:300]}") from exc
                    self._replace()
                self._dispatch()
                continue
            actor, number, params = self._running.pop(ref)
            try:
                result = Candidate.from_dict(self.ray.get(ref))
                self._idle.append(actor)
                self._dispatch()
                return result
            except self.ray.exceptions.RayActorError as exc:
                self._replace()
                reason = str(exc).strip().splitlines()[0][:300]
                self._lost[number] = self._lost.get(number, 0) + 1
                if node_lost(exc) and self._lost[number] <= MAX_RETRIES:
                    if self.on_retry is not None:
                        self.on_retry(number, f"its worker's node was lost: {reason}")
                    self._backlog.insert(0, (number, params))  # evaluated again, same number
                    self._dispatch()
                    continue
                self._dispatch()
                return Candidate(number, params, state=FAILED, error=f"worker died while evaluating ({type(exc).__name__}): {reason}")
            except self.ray.exceptions.RayTaskError as exc:
                self._idle.append(actor)
                self._dispatch()
                return Candidate(number, params, state=FAILED, error=f"worker error: {str(exc.cause if hasattr(exc, 'cause') else exc)[:300]}")

    def close(self) -> None:
        actors = getattr(self, "_idle", []) + list(getattr(self, "_starting", {}).values()) + [a for a, _, _ in getattr(self, "_running", {}).values()]
        for actor in actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
