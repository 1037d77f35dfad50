"""A run's summary from its store: counts and the best candidates (``automc status``)."""

from __future__ import annotations

import math
from typing import Any

from automc.search.candidate import COMPLETE
from automc.search.store import Store


def summarize(store: Store, top: int = 5) -> dict[str, Any]:
    """Counts by state and the ``top`` candidates by reward."""
    complete = [c for c in store.candidates() if c.state == COMPLETE]
    best = sorted(complete, key=lambda c: c.reward if c.reward is not None else -math.inf, reverse=True)[:top]
    meta = store.meta()
    return {
        "name": store.name,
        **store.counts(),
        "budget": meta.get("config", {}).get("budget", {}),
        "elapsed_s": meta.get("elapsed_s", 0.0),
        "base_metrics": meta.get("base_metrics", {}),
        "locked_groups": meta.get("locked_groups", []),
        "best": [c.to_dict() for c in best],
    }
