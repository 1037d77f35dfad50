"""The widths file (``automc.widths/1``): per channel group, the kept counts a space rounds to.

``automc profile widths`` writes one (``device_profiles/widths.py`` measures it); a
``channel_pruning`` space reads it (``widths: FILE``) and a run freezes a copy
(``automc/search/run_widths.py``). Reading, checking and comparing the file lives here, in the
core, so the space, the run and the measurement agree on one format and one set of checks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automc.errors import UserError

FORMAT = "automc.widths/1"


def read_widths_file(path: str | Path, field: str = "widths") -> dict[str, Any]:
    """The parsed content of a widths file, its format and groups checked (one line naming
    ``field`` and the fix otherwise); provenance kept as written."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"widths file {path} does not exist: write one with 'automc profile widths' (or say widths: measure)", field=field)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"widths file {path} is not valid JSON ({exc}): write it again with 'automc profile widths'", field=field) from None
    load_widths(data, field=field, where=str(path))
    return data


def load_widths(source: str | Path | Mapping[str, Any], *, field: str = "widths", where: str = "widths") -> dict[str, list[int]]:
    """Group → allowed kept-channel counts (ascending, each once) from a widths file or its
    parsed content: what decides the models; the rest of the file is provenance."""
    if not isinstance(source, Mapping):
        return load_widths(read_widths_file(source, field), field=field, where=str(source))
    if source.get("format") != FORMAT or not isinstance(source.get("groups"), Mapping):
        raise UserError(f"{where} is not an automc widths file (format {source.get('format')!r}, expected {FORMAT!r}): write it again with 'automc profile widths'", field=field)
    out: dict[str, list[int]] = {}
    for group, entry in source["groups"].items():
        widths = entry.get("widths") if isinstance(entry, Mapping) else None
        if not isinstance(widths, list) or not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
            raise UserError(f"{where}: group {group!r} needs a list of positive channel counts under 'widths'", field=field)
        out[str(group)] = sorted(set(widths))
    return out


def inline_widths(widths: Mapping[str, list[int]], roots: Mapping[str, str]) -> dict[str, Any] | None:
    """A space's widths (dimension → counts; ``roots``: dimension → group) as a widths mapping
    — the counts themselves, not the file they came from, so a saved model's card or a stored
    config rebuilds the same counts wherever it is read, whatever became of the file."""
    if not widths:
        return None
    return {"format": FORMAT, "groups": {roots[dim]: {"widths": list(counts)} for dim, counts in widths.items()}}


def space_widths(source: str | Path | Mapping[str, Any], roots: Mapping[str, str], channels: Mapping[str, int]) -> dict[str, list[int]]:
    """A space's dimension → allowed kept counts from a widths file, checked against the
    space's groups (``roots``: dimension → its group's root layer; ``channels``: dimension →
    full count): an unknown group or other channel counts is one line naming the fix."""
    by_root = {root: dim for dim, root in roots.items()}
    out: dict[str, list[int]] = {}
    for group, counts in load_widths(source).items():
        dim = by_root.get(group)
        if dim is None:
            raise UserError(f"widths: group {group!r} is not a channel group of this model and space (groups: {', '.join(by_root)}): write the file with 'automc profile widths' for this model", field="widths")
        if max(counts) != channels[dim]:
            raise UserError(f"widths: group {group!r} has {channels[dim]} channels, the file's widths end at {max(counts)}: it was measured on another model", field="widths")
        out[dim] = counts
    return out
