"""Analytic cost of a policy without building the model: what the RL environment's budget clamp
and the target projection (:mod:`automc.search.projection`) evaluate thousands of times.

Per conv/linear layer the space's dimensions say what scales it: the coupled group whose
output channels it produces (``ratio``), the groups whose channels it consumes (a
concatenation's consumer takes several, each for its share of the input channels), its
weight density, its bit-widths. A layer's MACs (or parameters) scale with the kept fraction of
its inputs times that of its outputs — exact for pruned convolutions, depthwise ones (which
only consume) and a flattened classifier. Elastic knobs scale it too: a layer inside a block
its stage's ``depth`` drops costs nothing, a kernel shrunk from k to k' costs (k'/k)². The
figures are relative to the space's default policy (the uncompressed model; all-max-bits for
mixed precision).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automc.compress.spaces import SearchSpace, split_name

METRICS = ("auto", "macs", "bitops", "effective_macs", "params", "size_bytes")


class CostModel:
    """``cost(params)``: the policy's ``metric`` relative to the default policy (1.0).

    ``metric``: ``macs``; ``bitops`` (MACs × w_bits × a_bits / 1024); ``effective_macs``
    (MACs × density); ``params``; ``size_bytes`` (parameters × density × w_bits / 32, an
    estimate: biases, BatchNorm and per-channel scales are left out); ``auto`` — BitOps when
    the space searches bit-widths, else effective MACs (the RL environment's cost). A space
    that computes its own MACs and parameters (:meth:`SearchSpace.analytic_cost`, e.g. the
    architecture space) is asked directly, and its figures are relative to ``reference`` when
    given (the measured base model a target is relative to, which such a space does not
    rebuild by default) — other spaces' default policy *is* the base model.
    """

    def __init__(self, space: SearchSpace, metric: str = "auto", *, reference: float | None = None) -> None:
        if metric not in METRICS:
            raise ValueError(f"cost metric {metric!r} is not one of {', '.join(METRICS)}")
        self.space = space
        self.dims = space.dimensions
        self.layers: dict[str, dict[str, Any]] = {}
        default = {k: d.default for k, d in self.dims.items()}
        # a space that computes its own MACs / parameters (architecture search) is asked
        # directly; its networks are float and dense: BitOps and effective MACs scale as MACs,
        # size as 4 bytes a parameter (buffers left out)
        self.key = "params" if metric in ("params", "size_bytes") else "macs"
        self.scale = 4.0 if metric == "size_bytes" else 1.0
        self.own = space.analytic_cost(default, self.key) is not None
        if self.own:
            self.metric = metric if metric != "auto" else "macs"
            self.base = reference or self.scale * float(space.analytic_cost(default, self.key) or 0.0) or 1.0
            return

        def slot(layer: str) -> dict[str, Any]:
            return self.layers.setdefault(layer, {"weight": 0.0, "in": [], "in_total": None, "out": None, "density": None, "w": None, "a": None, "block": None, "kernel": None})

        for name, d in self.dims.items():
            info = dict(d.info)
            layer, knob = split_name(name)
            if knob == "depth":  # elastic depth: block i of the stage is kept while i < depth
                for i, members in enumerate(info.get("blocks", [])):
                    for m in members:
                        slot(m)["block"] = (name, i)
            elif knob == "kernel":
                slot(layer)["kernel"] = (name, float(d.default))
            elif knob == "ratio":
                for p in info.get("producers", []):
                    slot(p)["out"] = name
                shares = dict(info.get("consumer_channels", {}))
                for c in info.get("consumers", []):
                    n, total = shares.get(c, (None, None))
                    slot(c)["in"].append((name, n))
                    slot(c)["in_total"] = total
            elif knob in ("density", "w_bits", "a_bits"):
                slot(layer)[{"density": "density", "w_bits": "w", "a_bits": "a"}[knob]] = name
        bits = any(v["w"] or v["a"] for v in self.layers.values())
        self.metric = ("bitops" if bits else "effective_macs") if metric == "auto" else metric
        key = "params" if self.metric in ("params", "size_bytes") else "macs"
        for layer, w in self._layer_weights(space, key).items():
            slot(layer)["weight"] = float(w)
        self.base = self._raw({k: d.default for k, d in self.dims.items()}) or 1.0

    def _layer_weights(self, space: SearchSpace, key: str) -> dict[str, float]:
        """Each layer's MACs (or parameters): exact when the space knows them, else from
        per-layer dimensions, else its groups' figures spread over their members."""
        exact = dict(getattr(space, f"layer_{key}", None) or {})
        for d in self.dims.values():
            info = dict(d.info)
            if "members" not in info and "layer" in info:
                exact.setdefault(info["layer"], float(info.get(key, 0.0)))
        if not exact:
            for d in self.dims.values():
                info = dict(d.info)
                members = info.get("members", [])
                for m in members:
                    exact[m] = max(exact.get(m, 0.0), float(info.get(key, 0.0)) / max(1, len(members)))
        return exact

    def _kept(self, dim: str, params: Mapping[str, Any]) -> float:
        """The kept fraction of the group (or the dimension's value when it is no group)."""
        d = self.dims[dim]
        channels = dict(d.info).get("channels")
        v = float(params[dim])
        keep = getattr(self.space, "keep_count", None)
        if channels and keep is not None:
            return keep(int(channels), v, dim) / int(channels)
        return v

    def _in_fraction(self, layer: dict[str, Any], params: Mapping[str, Any]) -> float:
        if not layer["in"]:
            return 1.0
        total = layer["in_total"]
        if not total or any(n is None for _, n in layer["in"]):
            return self._kept(layer["in"][-1][0], params)  # the space gives no shares: one group feeds it
        removed = sum(n * (1.0 - self._kept(dim, params)) for dim, n in layer["in"])
        return max(0.0, (total - removed) / total)

    def channel_fractions(self, params: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
        """Per conv/linear layer the policy's dimensions touch: the kept fraction of its input
        and of its output channels (a lookup table's latency needs the counts, not the MACs;
        :mod:`automc.device_profiles.lut_policy`). Layers inside a dropped block are left out."""
        out: dict[str, tuple[float, float]] = {}
        for name, layer in self.layers.items():
            if layer["block"] and int(params[layer["block"][0]]) <= layer["block"][1]:
                continue  # inside a dropped block
            out[name] = (self._in_fraction(layer, params), self._kept(layer["out"], params) if layer["out"] else 1.0)
        return out

    def _raw(self, params: Mapping[str, Any]) -> float:
        total = 0.0
        for name, (kept_in, kept_out) in self.channel_fractions(params).items():
            layer = self.layers[name]
            c = layer["weight"] * kept_in
            if layer["kernel"]:
                c *= (float(params[layer["kernel"][0]]) / layer["kernel"][1]) ** 2
            c *= kept_out  # in this order: the same floats as before the split
            if layer["density"] and self.metric in ("effective_macs", "bitops", "size_bytes"):
                c *= float(params[layer["density"]])
            if self.metric == "bitops":
                w = float(params[layer["w"]]) if layer["w"] else 32.0
                a = float(params[layer["a"]]) if layer["a"] else 32.0
                c *= w * a / 1024.0
            elif self.metric == "size_bytes":
                c *= (float(params[layer["w"]]) if layer["w"] else 32.0) / 32.0
            total += c
        return total

    def __call__(self, params: Mapping[str, Any]) -> float:
        if self.own:
            return self.scale * float(self.space.analytic_cost(params, self.key) or 0.0) / self.base
        return self._raw(params) / self.base
