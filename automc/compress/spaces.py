"""The search-space contract: dimensions, policies and the ``SearchSpace`` base class.

A *policy* (``params``) is a flat, JSON-serialisable dict ``{dimension name: value}``.
Dimension names are ``"<module path>:<knob>"`` — ``layer1.0.conv1:ratio`` (channel preserve
ratio), ``layer1.0.conv1:density`` (fraction of weights kept), ``layer1.0.conv1:w_bits`` /
``:a_bits`` (bit-widths) — so the joint space is simply the union of its parts and a policy
file reads like a per-layer table.

``apply(model, params)`` returns a new module and never mutates its input. It must depend
only on the params and the model's weights, so a compressed model can be rebuilt from its
base architecture and policy (structure) plus its saved ``state_dict`` (values).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from automc.compress.dimensions import Choice, Dimension, Float, Int, split_name
from automc.errors import UserError
from automc.registry import create, registry

SPACES = registry("automc.search_spaces")


class SearchSpace(ABC):
    """Base class of search spaces (entry-point group ``automc.search_spaces``).

    Subclasses build ``self._dims`` (ordered name → dimension) in ``__init__`` from the model
    and implement :meth:`apply`. ``calibration`` is a list of input batches for spaces that
    need data (activation ranges); others ignore it.
    """

    name: ClassVar[str] = ""
    # True for spaces whose ``apply`` builds a new, untrained network (architecture search):
    # the search trains each candidate on the experiment's proxy task before scoring it
    trains_candidates: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        *,
        calibration: Sequence[torch.Tensor] | None = None,
    ) -> None:
        self.example_input = example_input
        self.calibration = list(calibration or [])
        self._dims: dict[str, Dimension] = {}

    # -- dimensions -------------------------------------------------------------------------
    @property
    def dimensions(self) -> dict[str, Dimension]:
        """Ordered ``name → dimension`` (network order)."""
        return dict(self._dims)

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor keywords (besides model/input/calibration)."""
        return {}

    def default_params(self) -> dict[str, Any]:
        """The policy that compresses nothing (within the space's bounds)."""
        return {k: d.default for k, d in self._dims.items()}

    def canonical(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """A key equal for two policies exactly when they build the same model: the runner
        never evaluates a policy whose key matches a finished candidate's. The default is
        the validated values (reals to 12 significant digits); spaces whose knobs are
        rounded (kept channels, kept weights) override it with what they really build."""
        return tuple((k, float(f"{v:.12g}") if isinstance(v, float) else v) for k, v in self.validate(params, partial=True).items())

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """A random policy; identical for identically seeded generators."""
        return {k: d.sample(rng) for k, d in self._dims.items()}

    def sample_across_budgets(self, rng: np.random.Generator, jitter: float = 0.15) -> dict[str, Any]:
        """A random policy whose overall compression level is itself random.

        One level u ~ U(0, 1) places every dimension at the same relative position, jittered
        by ±``jitter`` per dimension. Independent per-dimension draws (:meth:`sample`) average
        out to similar-sized models; this covers light to heavy compression, as a search does.
        """
        u = float(rng.uniform())
        return {k: d.from_unit(min(max(u + float(rng.uniform(-jitter, jitter)), 0.0), 1.0)) for k, d in self._dims.items()}

    def validate(self, params: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """Check names and ranges; with ``partial``, missing dimensions take their defaults.

        Errors name the offending layer and the allowed range.
        """
        if not isinstance(params, Mapping):
            raise UserError(f"a policy must be a mapping of dimension name to value, got {type(params).__name__}")
        unknown = [k for k in params if k not in self._dims]
        if unknown:
            raise UserError(self._unknown_message(unknown[0]), field=unknown[0])
        if not partial:
            missing = [k for k in self._dims if k not in params]
            if missing:
                raise UserError(f"policy is missing {len(missing)} dimensions (e.g. {missing[0]!r}); pass partial=True to default them")
        return {k: d.check(k, params[k]) if k in params else d.default for k, d in self._dims.items()}

    def _unknown_message(self, name: str) -> str:
        layer, knob = split_name(name)
        layers = sorted({split_name(k)[0] for k in self._dims})
        knobs = sorted({split_name(k)[1] for k in self._dims})
        if layer in layers:
            return f"policy names knob {knob!r} for layer {layer!r}, which this space does not have; valid knobs: {', '.join(knobs)}"
        shown = ", ".join(layers[:8]) + (f", … ({len(layers)} layers)" if len(layers) > 8 else "")
        return f"policy names unknown layer {layer or name!r} (in {name!r}); valid layers: {shown}"

    def uniform(self, value: float | str) -> dict[str, Any]:
        """The same value in every dimension it fits: a ratio in (0, 1] goes to ratio/density
        dimensions, an integer bit-width to bit dimensions; ``"0.7,4"`` gives both."""
        parts = [p for p in str(value).split(",") if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise UserError(f"--uniform takes a ratio and/or a bit-width like 0.7 or 0.7,4; got {value!r}") from None
        params = self.default_params()
        used = [False] * len(values)
        for k, d in self._dims.items():
            for i, v in enumerate(values):
                if isinstance(d, Float) and 0 < v <= 1:
                    params[k] = d.check(k, v)
                    used[i] = True
                elif isinstance(d, (Choice, Int)) and d.knob.endswith("bits") and v >= 1 and v == int(v):
                    params[k] = d.check(k, int(v))
                    used[i] = True
        if values and not any(used):
            raise UserError(f"--uniform {value} fits no dimension of space {self.name!r}: give a ratio in (0, 1] or a bit-width")
        return params

    # -- behaviour --------------------------------------------------------------------------
    @abstractmethod
    def apply(self, model: nn.Module, params: Mapping[str, Any]) -> nn.Module:
        """A compressed copy of ``model`` under ``params``; ``model`` is left untouched."""

    def prepare(self, state: Mapping[str, Any] | None = None) -> None:
        """Do now the once-per-run work the first ``apply`` would otherwise do (e.g. statistics
        of the uncompressed model), so that a search times it as setup, not as a candidate's
        cost; or take ``state``, what another copy of this space (same model, data and
        settings) computed, from its :meth:`prepared`. Idempotent; the base does nothing."""

    def prepared(self) -> dict[str, Any]:
        """What :meth:`prepare` computed, for another process's copy of this space to take
        instead of computing it again (the driver hands it to every Ray worker); ``{}`` when
        there is nothing."""
        return {}

    def describe(self) -> list[dict[str, Any]]:
        """Per-dimension facts (layer type, channels, kernel, stride, MACs…) for agents' state."""
        return [{"name": k, **d.to_json(), **dict(d.info)} for k, d in self._dims.items()]

    def analytic_cost(self, params: Mapping[str, Any], key: str) -> float | None:
        """The MACs (``key="macs"``) or parameters (``"params"``) of the model ``params``
        builds, for spaces whose cost is not a per-layer product of ratios, densities and
        bit-widths (:class:`automc.search.cost_model.CostModel` reads those from the
        dimensions' info); None: not provided."""
        return None

    def locked_notes(self) -> list[str]:
        """One line per part of the model this space leaves uncompressed because it cannot
        compress it safely (e.g. channel groups tied by a shuffle); empty when none."""
        return []


SPACES.set_contract(SearchSpace)


def build_space(
    name: str,
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    calibration: Sequence[torch.Tensor] | None = None,
    config: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Instantiate the search space registered as ``name`` (or ``module:Class``)."""
    space: SearchSpace = create(SPACES.group, name, model, example_input, calibration=calibration, config=config)
    return space


def load_policy(path: str | Path) -> dict[str, Any]:
    """Read a policy JSON file: either ``{"params": {...}}`` (as automc writes) or a flat dict."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"policy file {p} does not exist: check --policy")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"policy file {p} is not valid JSON ({exc.msg} at line {exc.lineno}): fix the file") from None
    if isinstance(data, dict) and isinstance(data.get("params"), dict):
        data = data["params"]
    if not isinstance(data, dict):
        raise UserError(f"policy file {p} must hold a JSON object of dimension name → value")
    return data
