"""Which policies the run has already evaluated (or is evaluating), by canonical key.

The runner asks the ledger before evaluating a proposal. A proposal whose key
(:meth:`SearchSpace.canonical`) equals a finished candidate's is a duplicate: it is answered
from that candidate's record (the agent is told the same outcome under the new number, the
store records a PRUNED trial naming the original) and costs no budget. One equal to a
candidate still being evaluated waits for that one's outcome.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import replace

from automc.search.candidate import Candidate


class Ledger:
    """Canonical keys of finished and in-flight candidates, and duplicates waiting on them."""

    def __init__(self, finished: Iterable[tuple[Hashable, Candidate]] = ()) -> None:
        self._done: dict[Hashable, Candidate] = {}
        self._running: dict[Hashable, int] = {}
        self._waiting: dict[int, list[tuple[int, dict]]] = {}  # original number → [(number, params)]
        for key, cand in finished:
            self._done.setdefault(key, cand)

    def original(self, key: Hashable) -> Candidate | None:
        """The finished candidate with this key, if any."""
        return self._done.get(key)

    def running(self, key: Hashable) -> int | None:
        """The number of the in-flight candidate with this key, if any."""
        return self._running.get(key)

    def start(self, key: Hashable, number: int) -> None:
        self._running[key] = number

    def wait(self, original: int, number: int, params: dict) -> None:
        """Proposal ``number`` repeats in-flight candidate ``original``: answer it later."""
        self._waiting.setdefault(original, []).append((number, params))

    def waiting(self) -> int:
        return sum(len(v) for v in self._waiting.values())

    def finish(self, key: Hashable, cand: Candidate) -> list[Candidate]:
        """Record ``cand``'s outcome; returns the duplicates that were waiting for it."""
        self._running.pop(key, None)
        self._done.setdefault(key, cand)
        return [duplicate(cand, n, p) for n, p in self._waiting.pop(cand.number, [])]


def duplicate(original: Candidate, number: int, params: dict) -> Candidate:
    """Proposal ``number`` answered with ``original``'s outcome."""
    return replace(original, number=number, params=dict(params), timings={}, duplicate_of=original.number)
