"""``accelerator``: an analytic latency and energy model of a bit-flexible accelerator.

BitFusion-style: the array is made of 2×2-bit *BitBricks* that fuse to serve wider operands,
so a MAC with ``w``-bit weights and ``a``-bit activations occupies
``ceil(w/2) × ceil(a/2)`` bricks (operands are clamped to [min_bits, max_bits]; float layers
count as ``max_bits``). Per conv/linear layer with ``M`` MACs:

    compute_s = M × ceil(w/2) × ceil(a/2) / (bitbricks × f)   (M = non-zero MACs only
                                                                if skip_zero_weights)
    bytes     = weights × w/8  (sparse weights: bitmask + non-zeros, as in automc.compress.analysis)
              + input activations × a/8 + output activations × a/8
    memory_s  = bytes / dram_bandwidth
    latency   = Σ_layers max(compute_s, memory_s) + per_layer_overhead      (a roofline)
    energy    = Σ_layers [M × ceil(w/2) × ceil(a/2) × E_brick + bytes × (E_dram + E_sram)]
              + static_power × latency

The device is described in a YAML file (``device_profiles/devices/bitfusion.yaml`` is the
default); every number above is an editable field there. Metrics: ``latency_ms``,
``energy_mj``, plus the compute-/memory-bound split in the provenance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from automc.compress.analysis import analyze, storage_bytes, weight_storage_bytes
from automc.compress.quant import FLOAT_BITS
from automc.compress.spaces import SearchSpace
from automc.device_profiles.policy_layers import policy_layers
from automc.errors import UserError
from automc.measure.profiles import DeviceProfile, Measurement

DEFAULT_DEVICE = Path(__file__).parent / "devices" / "bitfusion.yaml"


class Energy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bitbrick_op: float = Field(gt=0)
    sram_byte: float = Field(ge=0)
    dram_byte: float = Field(ge=0)


class AcceleratorSpec(BaseModel):
    """The editable device description (units in the field names)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    frequency_mhz: float = Field(gt=0)
    bitbricks: int = Field(gt=0)
    min_bits: int = Field(ge=1, le=8)
    max_bits: int = Field(ge=8, le=32)
    skip_zero_weights: bool = False
    dram_bandwidth_gbps: float = Field(gt=0)
    per_layer_overhead_us: float = Field(ge=0)
    energy_pj: Energy
    static_power_mw: float = Field(ge=0)


def load_spec(path: str | Path) -> AcceleratorSpec:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"accelerator description {p} does not exist: pass a YAML file like {DEFAULT_DEVICE.name}", field="device")
    try:
        data = yaml.safe_load(p.read_text())
        return AcceleratorSpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise UserError(f"{p} is not valid YAML ({exc})") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(f"{p}: field {where!r}: {err['msg']} (got {err.get('input')!r})", field=where) from None


class AcceleratorProfile(DeviceProfile):
    name = "accelerator"
    metrics = ("latency_ms", "energy_mj")
    analytic = True  # a formula of the architecture and bit-widths: a target on it is guaranteed

    def __init__(self, device: str | None = None) -> None:
        self.device_path = Path(device) if device else DEFAULT_DEVICE
        self.spec = load_spec(self.device_path)

    def config(self) -> dict[str, Any]:
        return {"device": str(self.device_path)}

    def describe(self) -> dict[str, Any]:
        return {"profile": self.name, "device": self.spec.model_dump(), "analytic": True}

    def _bricks(self, bits: int) -> int:
        b = self.spec.max_bits if bits >= FLOAT_BITS else min(max(bits, self.spec.min_bits), self.spec.max_bits)
        return math.ceil(b / 2)

    def layers(self, model: nn.Module, example_input: torch.Tensor) -> list[dict[str, Any]]:
        """Per-layer latency/energy breakdown."""
        modules = dict(model.named_modules())
        out = []
        for layer in analyze(model, example_input[:1]).layers:
            w_eff = self.spec.max_bits if layer.w_bits >= FLOAT_BITS else layer.w_bits
            wbytes = weight_storage_bytes(modules[layer.name].weight.detach(), w_eff, layer.weight_quantizer)
            macs = layer.effective_macs if self.spec.skip_zero_weights else layer.macs
            out.append({"layer": layer.name, **self.layer_cost(macs, wbytes, math.prod(layer.input_shape), math.prod(layer.output_shape), layer.w_bits, layer.a_bits)})
        return out

    def layer_cost(self, macs: int, weight_bytes: float, in_numel: int, out_numel: int, w_bits: int, a_bits: int) -> dict[str, Any]:
        """One conv/linear layer's roofline latency and energy from its MACs, stored weight
        bytes and activation counts (the formula in the module docstring). :meth:`layers` and
        :meth:`policy_estimate` share it, so a policy read without building gets the built model's floats."""
        s = self.spec
        brick_ops = macs * self._bricks(w_bits) * self._bricks(a_bits)
        bytes_moved = weight_bytes + (in_numel + out_numel) * ((s.max_bits if a_bits >= FLOAT_BITS else a_bits) / 8)
        compute_s = brick_ops / (s.bitbricks * s.frequency_mhz * 1e6)
        memory_s = bytes_moved / (s.dram_bandwidth_gbps * 1e9)
        latency_s = max(compute_s, memory_s) + s.per_layer_overhead_us * 1e-6
        energy_pj = brick_ops * s.energy_pj.bitbrick_op + bytes_moved * (s.energy_pj.dram_byte + s.energy_pj.sram_byte)
        return {
            "latency_ms": latency_s * 1e3,
            "energy_mj": energy_pj * 1e-9,
            "bound": "compute" if compute_s >= memory_s else "memory",
            "w_bits": w_bits,
            "a_bits": a_bits,
        }

    def totals(self, per_layer: list[dict[str, Any]]) -> dict[str, float]:
        """The model's latency (the layers' sum) and energy (theirs plus static power over
        that latency)."""
        latency_ms = sum(r["latency_ms"] for r in per_layer)
        energy_mj = sum(r["energy_mj"] for r in per_layer) + self.spec.static_power_mw * latency_ms * 1e-3  # mW x ms = uJ
        return {"latency_ms": latency_ms, "energy_mj": energy_mj}

    def policy_estimate(self, model: nn.Module, space: SearchSpace, example_input: torch.Tensor) -> Callable[[Mapping[str, Any]], Mapping[str, float]] | None:
        """Latency and energy read off a policy's channel counts, nothing built
        (:func:`automc.device_profiles.policy_layers.policy_layers`): :meth:`layer_cost` on
        each layer's counts, summed in :meth:`layers`' order, so the floats are the built model's."""
        reading = policy_layers(model, space, example_input)
        if reading is None:
            return None

        def estimate(params: Mapping[str, Any]) -> dict[str, float]:
            per_layer = []
            for layer in reading(params):
                w_eff = self.spec.max_bits if layer.w_bits >= FLOAT_BITS else layer.w_bits
                wbytes = storage_bytes(layer.weights, layer.weights, w_eff, layer.weight_quantizer)  # no zero weights: all stored
                per_layer.append(self.layer_cost(layer.macs, wbytes, layer.in_numel, layer.out_numel, layer.w_bits, layer.a_bits))
            return self.totals(per_layer)

        return estimate

    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        per_layer = self.layers(model, example_input)
        bound = {k: sum(1 for r in per_layer if r["bound"] == k) for k in ("compute", "memory")}
        return Measurement(
            self.totals(per_layer),
            {"latency_ms": 0.0, "energy_mj": 0.0},
            1,
            {"profile": self.name, "device": self.spec.name, "analytic": True, "layers_bound": bound},
        )
