"""Which int8 scheme onnxruntime should run on a CPU, and the CPU features that decide it.

onnxruntime's x86 int8 kernels multiply unsigned 8-bit activations by signed 8-bit weights
(U8S8). Without VNNI they use ``VPMADDUBSW``, which adds *pairs* of u8×s8 products into a
saturating int16: 2 × 255 × 127 = 64770 overflows 32767, so large activations meeting large
weights are clipped (:func:`saturation_probe` shows it: 51 output steps off on an AMD EPYC
with AVX2 only, exact with 7-bit weights). VNNI (``VPDPBUSD``, AVX512-VNNI or AVX-VNNI)
accumulates in int32 and ARM's dot-product instructions do not saturate either. (ResNet-20's
drop from 99.8% to 95.8% agreement on that EPYC came mostly from the export's shared Q/DQ on
residual inputs, fixed in :mod:`automc.results.onnx`; the scheme guards against the rest.)

The schemes follow onnxruntime's own guidance for CPU inference (``quantize_static``'s
docstring, "Choosing parameters for CPU inference"):

* ``u8s8`` — x86 with VNNI: uint8 activations, int8 weights on the full symmetric grid
  [-127, 127];
* ``u8s8-reduced`` — x86 without VNNI: the same with ``reduce_range`` (weights on [-64, 64],
  7 bits), so 2 × 255 × 64 = 32640 fits int16 and nothing saturates;
* ``s8s8`` — ARM: int8 activations (asymmetric: the same grid as uint8 shifted by 128, so the
  PyTorch fake quantisation is unchanged) and full-range int8 weights.

The PyTorch fake quantisation of 8-bit layers uses the chosen scheme's weight grid, so the
accuracy a search measures is the accuracy onnxruntime delivers. ``auto`` picks the scheme
for the CPU at hand; a model meant for another CPU names its scheme explicitly.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from typing import Any

from automc.errors import UserError

# Flags that change how onnxruntime runs int8 (x86: /proc/cpuinfo "flags"; ARM: "Features").
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
INT8_FLAGS = VNNI_FLAGS | {"avx2", "avx512f", "avx512bw", "asimddp", "i8mm", "sve"}
X86 = ("x86_64", "amd64", "i386", "i686", "x86")
ARM = ("aarch64", "arm64", "armv8l", "armv7l")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU's architecture, model name and the instruction-set flags it reports."""

    arch: str
    model: str
    flags: frozenset[str]

    @property
    def is_x86(self) -> bool:
        return self.arch.lower() in X86

    @property
    def is_arm(self) -> bool:
        return self.arch.lower() in ARM

    @property
    def vnni(self) -> bool:
        """Whether int8 products accumulate without int16 saturation on this x86 CPU."""
        return bool(self.flags & VNNI_FLAGS)

    def summary(self) -> dict[str, Any]:
        """What an export card records: enough to tell which int8 kernels ran."""
        return {"arch": self.arch, "cpu": self.model, "vnni": self.vnni, "int8_flags": sorted(self.flags & INT8_FLAGS)}


def _read_cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model, flags


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU (Linux reads /proc/cpuinfo; elsewhere only the architecture)."""
    model, flags = _read_cpuinfo()
    return CpuFeatures(arch=platform.machine() or "unknown", model=model or platform.processor() or "unknown", flags=flags)


@dataclass(frozen=True)
class Int8Scheme:
    """One way of quantising for onnxruntime: data types, weight range, and why."""

    name: str
    activation_type: str  # "uint8" | "int8"
    weight_type: str  # "int8"
    reduce_range: bool
    why: str

    @property
    def weight_qmax(self) -> int:
        """Largest |integer weight| of an 8-bit layer: 127, or 64 with ``reduce_range``."""
        return 64 if self.reduce_range else 127

    def summary(self) -> dict[str, Any]:
        return {
            "scheme": self.name,
            "activations": self.activation_type,
            "weights": self.weight_type,
            "weight_range": [-self.weight_qmax, self.weight_qmax],
            "reduce_range": self.reduce_range,
            "why": self.why,
        }


SCHEMES: dict[str, Int8Scheme] = {
    "u8s8": Int8Scheme("u8s8", "uint8", "int8", False, "x86 with VNNI: u8×s8 products accumulate in int32 without saturation"),
    "u8s8-reduced": Int8Scheme(
        "u8s8-reduced", "uint8", "int8", True,
        "x86 without VNNI: VPMADDUBSW sums u8×s8 pairs in saturating int16; 7-bit weights keep 2×255×64 < 2^15",
    ),  # fmt: skip
    "s8s8": Int8Scheme("s8s8", "int8", "int8", False, "ARM: onnxruntime recommends int8 activations and weights"),
}
INT8_SCHEMES = ("auto", *SCHEMES)


def recommended_scheme(features: CpuFeatures | None = None) -> Int8Scheme:
    """The scheme onnxruntime documents for ``features`` (this CPU when None)."""
    f = features or cpu_features()
    if f.is_arm:
        return SCHEMES["s8s8"]
    if f.is_x86 and not f.vnni:
        return SCHEMES["u8s8-reduced"]
    return SCHEMES["u8s8"]


def resolve_scheme(name: str | None, features: CpuFeatures | None = None) -> Int8Scheme:
    """``auto``/None → the scheme for this CPU; a scheme name → that scheme; else a user error."""
    if name is None or name == "auto":
        return recommended_scheme(features)
    if name not in SCHEMES:
        raise UserError(f"int8_scheme {name!r} is not known; valid: {', '.join(INT8_SCHEMES)}", field="int8_scheme")
    return SCHEMES[name]


def scheme_note(scheme: Int8Scheme, features: CpuFeatures | None = None) -> str | None:
    """A warning when ``scheme`` is not the one this CPU needs (e.g. u8s8 without VNNI)."""
    f = features or cpu_features()
    wanted = recommended_scheme(f)
    if scheme.name == "u8s8" and wanted.reduce_range:
        return (
            f"int8 scheme u8s8 on a CPU without VNNI ({f.model}): onnxruntime may saturate; "
            f"quantise with int8_scheme={wanted.name} for this CPU"
        )
    return None


def saturation_probe(scheme: Int8Scheme, *, channels: int = 64, seed: int = 0) -> float:
    """Run one adversarial int8 convolution in onnxruntime; its worst error in output steps.

    Activations near the top of their range meet weights at the edge of ``scheme``'s grid,
    all of one sign per output channel — the case where ``VPMADDUBSW``'s int16 pair sums
    overflow. Returns max |onnxruntime − exact integer result| in units of one output
    quantisation step: ≤ 1 means this CPU runs the scheme exactly, thousands mean it
    saturates. Takes ~50 ms (one small session).
    """
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    signed = scheme.activation_type == "int8"
    xtype, xnp = (TensorProto.INT8, np.int8) if signed else (TensorProto.UINT8, np.uint8)
    lo, hi = (100, 128) if signed else (200, 256)
    x = rng.integers(lo, hi, size=(1, channels, 8, 8)).astype(xnp)
    qmax = scheme.weight_qmax
    sign = np.where(rng.random((channels, 1, 1, 1)) < 0.5, 1, -1)
    w = (sign * rng.integers(qmax - 8, qmax + 1, size=(channels, channels, 3, 3))).astype(np.int8)
    exact = _conv3x3_int(x.astype(np.int64), w.astype(np.int64))
    step = float(np.abs(exact).max()) * 1.05 / 127  # the output grid spans the exact range
    yz = np.array(0 if signed else 128, dtype=xnp)
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "xs"), numpy_helper.from_array(np.array(0, xnp), "xz"),
        numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(channels, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(channels, np.int8), "wz"),
        numpy_helper.from_array(np.array(step, np.float32), "ys"), numpy_helper.from_array(yz, "yz"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"], pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "probe", [helper.make_tensor_value_info("x", xtype, list(x.shape))], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    y = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = np.clip(np.round(exact / step), -127, 127) * step
    return float(np.abs(y - want).max() / step)


def _conv3x3_int(x: Any, w: Any) -> Any:
    """Exact integer 3×3 convolution, padding 1 (int64 numpy), for :func:`saturation_probe`."""
    import numpy as np

    n, c, h, wd = x.shape
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd), dtype=np.int64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,kc->nkhw", pad[:, :, i : i + h, j : j + wd], w[:, :, i, j])
    return out
