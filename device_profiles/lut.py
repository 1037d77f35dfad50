"""``lut``: latency predicted from a per-layer lookup table (NetAdapt / OFA style).

**Building** (:func:`build_lut`, ``automc profile build-lut``) enumerates every per-layer
configuration a search space can produce from a model — operator, kernel, stride, padding,
input size, bits, and the input/output channel counts the space can reach — and measures each
one alone with a measured device profile (``onnxruntime-cpu`` by default, or any plugin, so a
table can be rebuilt for new hardware). Channel counts are measured on a grid: the reachable
extremes plus every multiple of ``step`` in between (runtimes pad channels to their vector
width, so latency is a staircase in the channel count). The time of an empty model is
subtracted from each entry. Finally a constant (the graph's non-conv work and per-run
overhead) is fitted as the median gap between measured and summed latencies over ``n_fit``
random candidates. The table stores its provenance: device, threads, library versions, date.

**Predicting** (``lut`` profile): sum over conv/linear layers of the table entry (``ceil``:
the next grid point up, or ``linear`` interpolation) plus the constant. No model is run.
``fit="affine"`` instead uses ``scale × sum + constant``, both fitted by least squares on the
same candidates (standalone layers run at a different speed than inside a graph).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.compress.spaces import SearchSpace
from automc.device_profiles.lut_keys import keyed_layers, layer_options, make_layer
from automc.device_profiles.lut_policy import policy_latency
from automc.errors import UserError
from automc.measure.profiles import DeviceProfile, Measurement

FORMAT = "automc.lut/1"
INTERPOLATIONS = ("ceil", "linear")

def build_lut(
    model: nn.Module,
    space: SearchSpace,
    profile: DeviceProfile,
    example_input: torch.Tensor,
    *,
    step: int = 8,
    n_fit: int = 20,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Measure every per-layer configuration ``space`` can produce from ``model`` on ``profile``."""
    if "latency_ms" not in profile.metrics:
        raise UserError(f"device profile {profile.name!r} reports no latency_ms: build a LUT from a measured latency profile")
    if int(step) < 1:
        raise UserError(f"step must be >= 1, got {step}", field="step")
    options = layer_options(model, space, example_input, int(step))
    grids: dict[str, dict[str, set[int]]] = {}
    for opt in options.values():
        for key in opt["keys"]:
            g = grids.setdefault(key, {"in": set(), "out": set()})
            g["in"].update(opt["in"])
            g["out"].update(opt["out"])
    jobs = []
    for key, g in grids.items():
        depthwise = json.loads(key)["op"] == "dwconv"
        pairs = [(c, c) for c in sorted(g["in"] | g["out"])] if depthwise else [(i, o) for i in sorted(g["in"]) for o in sorted(g["out"])]
        jobs += [(key, i, o) for i, o in pairs]
    overhead = profile.measure(nn.Identity(), torch.zeros(1, 1)).values["latency_ms"]
    measured: dict[str, dict[str, float]] = {}
    for n, (key, cin, cout) in enumerate(jobs):
        layer, x = make_layer(key, cin, cout)
        lat = profile.measure(layer, x).values["latency_ms"]
        measured.setdefault(key, {})[f"{cin},{cout}"] = max(0.0, lat - overhead)
        if progress:
            progress(n + 1, len(jobs))
    entries = []
    for key, g in grids.items():
        depthwise = json.loads(key)["op"] == "dwconv"
        if depthwise:
            chans = sorted(g["in"] | g["out"])
            entries.append({"key": json.loads(key), "in": chans, "out": chans, "latency_ms": [measured[key][f"{c},{c}"] for c in chans], "depthwise": True})
        else:
            gi, go = sorted(g["in"]), sorted(g["out"])
            entries.append({"key": json.loads(key), "in": gi, "out": go, "latency_ms": [[measured[key][f"{i},{o}"] for o in go] for i in gi]})
    table = {
        "format": FORMAT,
        "provenance": {
            **profile.describe(),
            "profile_config": profile.config(),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "space": space.name,
            "space_config": space.config(),
            "step": int(step),
            "measurements": len(jobs),
            **dict(provenance or {}),
        },
        "overhead_ms": overhead,
        "constant_ms": 0.0,
        "entries": entries,
    }
    lut = LookupTableProfile(table=table)
    rng = np.random.default_rng(seed)
    sums, measured_ms = [], []
    for _ in range(int(n_fit)):
        cand = space.apply(model, space.sample_across_budgets(rng))
        sums.append(lut.predict(cand, example_input))
        measured_ms.append(profile.measure(cand, example_input).values["latency_ms"])
    s_arr, m_arr = np.array(sums), np.array(measured_ms)
    table["constant_ms"] = float(np.median(m_arr - s_arr)) if sums else 0.0
    if len(sums) >= 3:  # optional affine fit: scale x sum + constant (least squares)
        scale, const = np.linalg.lstsq(np.c_[s_arr, np.ones_like(s_arr)], m_arr, rcond=None)[0]
        table["affine"] = {"scale": float(scale), "constant_ms": float(const)}
    table["provenance"]["fit_candidates"] = int(n_fit)
    return table


class LookupTableProfile(DeviceProfile):
    name = "lut"
    metrics = ("latency_ms",)
    analytic = True  # a sum of table entries, no timing: a target on it is guaranteed

    def __init__(self, table: str | Mapping[str, Any], interpolation: str = "ceil", fit: str = "constant") -> None:
        if fit not in ("constant", "affine"):
            raise UserError(f"fit must be 'constant' or 'affine', got {fit!r}", field="fit")
        self.fit = fit
        if interpolation not in INTERPOLATIONS:
            raise UserError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}", field="interpolation")
        self.interpolation = interpolation
        if isinstance(table, Mapping):
            self.path = None
            data = dict(table)
        else:
            self.path = Path(table)
            if not self.path.is_file():
                raise UserError(f"lookup table {self.path} does not exist: build one with 'automc profile build-lut'", field="table")
            try:
                data = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise UserError(f"lookup table {self.path} is not valid JSON ({exc.msg}): rebuild it") from None
        if data.get("format") != FORMAT:
            raise UserError(f"{self.path or 'table'} is not an automc lookup table (format {data.get('format')!r}, expected {FORMAT!r})")
        self.table = data
        if fit == "affine" and "affine" not in data:
            raise UserError(f"{self.path or 'table'} has no affine fit (built with fewer than 3 fit candidates): use fit=constant")
        self._entries = {json.dumps(e["key"], sort_keys=True): e for e in data["entries"]}

    def config(self) -> dict[str, Any]:
        return {"table": str(self.path) if self.path else None, "interpolation": self.interpolation, "fit": self.fit}

    def describe(self) -> dict[str, Any]:
        return {"profile": self.name, "table": str(self.path) if self.path else None, "measured_on": self.table["provenance"]}

    @staticmethod
    def _locate(grid: list[int], c: int, mode: str) -> list[tuple[int, float]]:
        """Grid indices and weights for channel count ``c``."""
        if c >= grid[-1]:
            return [(len(grid) - 1, c / grid[-1])]  # beyond the table: scale linearly
        if mode == "ceil" or c <= grid[0]:
            j = next(i for i, g in enumerate(grid) if g >= c)
            return [(j, 1.0)]
        j = next(i for i, g in enumerate(grid) if g >= c)
        if grid[j] == c:
            return [(j, 1.0)]
        t = (c - grid[j - 1]) / (grid[j] - grid[j - 1])
        return [(j - 1, 1 - t), (j, t)]

    def layer_latency(self, key: str, cin: int, cout: int) -> float | None:
        e = self._entries.get(key)
        if e is None:
            return None
        lat = e["latency_ms"]
        if e.get("depthwise"):
            return float(sum(w * lat[i] for i, w in self._locate(e["in"], cin, self.interpolation)))
        return float(
            sum(wi * wo * lat[i][o] for i, wi in self._locate(e["in"], cin, self.interpolation) for o, wo in self._locate(e["out"], cout, self.interpolation))
        )

    def predict(self, model: nn.Module, example_input: torch.Tensor) -> float:
        """Summed per-layer latency (without the fitted constant)."""
        total = 0.0
        for s, key in keyed_layers(model, example_input):
            lat = self.layer_latency(key, s.in_channels, s.out_channels)
            if lat is None:
                where = f" ({self.path})" if self.path else ""
                shape = (s.in_channels, *s.input_shape[1:]) if s.type != "Linear" else s.input_shape
                raise UserError(
                    f"lookup table{where} has no entry for layer {s.name!r} ({json.loads(key)['op']}, input {list(shape)}, "
                    f"{json.loads(key)['bits']} bits): rebuild it with 'automc profile build-lut' for this model and space"
                )
            total += lat
        return total

    def fitted(self, summed: float) -> float:
        """The latency for a sum of table entries: plus the fitted constant, or affine."""
        if self.fit == "affine":
            a = self.table["affine"]
            return float(a["scale"] * summed + a["constant_ms"])
        return summed + float(self.table.get("constant_ms", 0.0))

    def policy_estimate(self, model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> Callable[[Mapping[str, Any]], Mapping[str, float]] | None:
        """The table's latency read off a policy's channel counts, nothing built
        (:func:`automc.device_profiles.lut_policy.policy_latency`)."""
        return policy_latency(self.layer_latency, self.fitted, model, space, example_input)

    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        value = self.fitted(self.predict(model, example_input))
        return Measurement({"latency_ms": value}, {"latency_ms": 0.0}, 1, {"profile": self.name, "table": str(self.path) if self.path else None, "analytic": True})

    # -- building and checking tables (``automc profile build-lut`` / ``widths`` / ``fidelity``) -------------
    @staticmethod
    def build_table(*args: Any, **kwargs: Any) -> dict[str, Any]:
        """:func:`build_lut` (the CLI reaches it through the registry, like any plugin)."""
        return build_lut(*args, **kwargs)

    @staticmethod
    def derive_widths(*args: Any, **kwargs: Any) -> dict[str, Any]:
        """:func:`automc.device_profiles.widths.derive_widths` (``automc profile widths``): the
        per-group efficient channel counts are measured the way tables are built."""
        from automc.device_profiles.widths import derive_widths

        return derive_widths(*args, **kwargs)

    def fidelity(self, measured: DeviceProfile, model: nn.Module, space: SearchSpace, example_input: torch.Tensor, **kwargs: Any) -> dict[str, Any]:
        """:func:`fidelity` of this table against the ``measured`` profile."""
        return fidelity(self, measured, model, space, example_input, **kwargs)


def fidelity(
    lut: LookupTableProfile,
    measured: DeviceProfile,
    model: nn.Module,
    space: SearchSpace,
    example_input: torch.Tensor,
    *,
    n: int = 50,
    seed: int = 1,
    sampler: str = "budgets",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Kendall τ and MAPE of LUT predictions against measured latency over ``n`` random candidates.

    ``sampler="budgets"`` draws candidates across compression levels
    (:meth:`SearchSpace.sample_across_budgets`); ``"iid"`` draws each dimension independently.
    """
    if sampler not in ("budgets", "iid"):
        raise UserError(f"sampler must be 'budgets' or 'iid', got {sampler!r}", field="sampler")
    from scipy.stats import kendalltau

    rng = np.random.default_rng(seed)
    pred, meas = [], []
    draw = space.sample_across_budgets if sampler == "budgets" else space.sample
    for i in range(int(n)):
        cand = space.apply(model, draw(rng))
        pred.append(lut.measure(cand, example_input).values["latency_ms"])
        meas.append(measured.measure(cand, example_input).values["latency_ms"])
        if progress:
            progress(i + 1, int(n))
    p, m = np.array(pred), np.array(meas)
    tau = float(kendalltau(p, m).statistic)
    mape = float(np.mean(np.abs(p - m) / m) * 100)
    return {"n": int(n), "sampler": sampler, "kendall_tau": tau, "mape_percent": mape, "predicted_ms": pred, "measured_ms": meas}
