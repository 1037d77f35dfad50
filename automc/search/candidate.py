"""``Candidate``: the one record that crosses agent, executor, store and report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

COMPLETE = "complete"
FAILED = "failed"
RUNNING = "running"


@dataclass(frozen=True)
class Candidate:
    """One evaluated policy: its params, every metric, the reward, state and error.

    ``number`` is the candidate's index in the run (the Optuna trial number). JSON-serialisable.
    """

    number: int
    params: Mapping[str, Any]
    metrics: Mapping[str, float] = field(default_factory=dict)
    reward: float | None = None
    state: str = COMPLETE
    error: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    # set when the policy equals an earlier candidate's: this outcome is that one's, not re-measured
    duplicate_of: int | None = None

    @property
    def ok(self) -> bool:
        return self.state == COMPLETE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"], d["metrics"], d["timings"] = dict(self.params), dict(self.metrics), dict(self.timings)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(
            number=int(d["number"]),
            params=dict(d["params"]),
            metrics=dict(d.get("metrics", {})),
            reward=d.get("reward"),
            state=d.get("state", COMPLETE),
            error=d.get("error"),
            timings=dict(d.get("timings", {})),
            duplicate_of=d.get("duplicate_of"),
        )
