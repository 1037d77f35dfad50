"""``onnxruntime-cpu``: latency measured with onnxruntime on this machine's CPU.

The candidate is exported to ONNX in its deployable form — fake quantisation removed, and
with ``int8="auto"`` its layers of at most 8 bits executed as real int8 (QDQ, quantised by
onnxruntime) because that is what this runtime can run faster; other bit-widths run in float.
A session with a fixed intra-op thread count and full graph optimisation runs a fixed input;
after warm-up, runs repeat until the median is stable (:func:`automc.measure.profiles.time_call`).
This is done in ``sessions`` fresh sessions (on a shared, virtualised CPU one session's
latency depends on where its buffers land, and differs from the next session's by up to
~10%, so a single session is not a reproducible figure).

``latency_ms`` is, per session, the fastest run (``statistic: min``, the default) or the
median run (``statistic: median``), then the median over sessions; ``latency_ms_median`` is
always reported too, with the inter-quartile range of the runs as its spread and the total
repeats. Why the minimum by default: other work on the host only ever *adds* time, in bursts
that last seconds to minutes, so the median moves with the neighbours while the minimum
stays the model's own cost. Measured on this project's 2-core VM, eight back-to-back
measurements of one pruned ResNet-20 spread 15.5% by median and 2.0% by minimum
(docs/device_profiles.md). Choose ``median`` on a dedicated, quiet device when typical
latency under the device's own load is what matters.

With ``paired: true``, a search's candidates are timed next to the run's uncompressed model
(:mod:`automc.measure.paired`): in each session the candidate and the base model run in
alternating chunks, and ``latency_ms`` is the median per-round ratio of their fastest runs
times the base model's ``latency_ms`` measured when the run started (``latency_ms_median``
likewise from the chunks' medians). A machine state lasting seconds then slows both sides of
the ratio alike, and every candidate of the run stands on the one base figure. Timing takes
about twice as long. Without a reference (``automc profile``, the base model itself) the
profile measures as it does unpaired.

The profile is ``cacheable``: latency depends on the architecture, not on weight values, so a
search serves an identical structure (types, shapes, bit-widths, input shape, settings) from
the run's measurement cache instead of measuring it again (:mod:`automc.measure.cache`).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import weakref
from collections.abc import Callable, Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.errors import UserError
from automc.results.int8_onnx import export_int8
from automc.results.onnx import INPUT_NAME, export_onnx, onnx_session
from automc.measure.paired import paired_timing
from automc.measure.profiles import DeviceProfile, Measurement, machine_description, time_call
from automc.compress.quant import FLOAT_BITS, quant_layers

INT8_MODES = ("auto", "never")
STATISTICS = ("min", "median")


def deployable(model: nn.Module) -> tuple[nn.Module, bool]:
    """A float copy of ``model`` with fake quantisation off, and whether any layer is <= 8 bit."""
    m = copy.deepcopy(model).eval()
    low = False
    for layer in quant_layers(m).values():
        layer.act_quant_enabled = False
        low = low or (layer.w_bits <= 8 and layer.a_bits <= 8)
        layer.w_bits, layer.a_bits = (8, 8) if (layer.w_bits <= 8 and layer.a_bits <= 8) else (FLOAT_BITS, FLOAT_BITS)
    return m, low


class OnnxRuntimeCPUProfile(DeviceProfile):
    name = "onnxruntime-cpu"
    metrics = ("latency_ms", "latency_ms_median")
    cacheable = True

    def __init__(
        self,
        threads: int = 1,
        batch_size: int = 1,
        input_shape: list[int] | None = None,
        int8: str = "auto",
        sessions: int = 3,
        statistic: str = "min",
        warmup: int = 50,
        min_repeats: int = 100,
        max_repeats: int = 5000,
        max_seconds: float = 2.0,
        rel_tol: float = 0.005,
        paired: bool = False,
    ) -> None:
        if int(threads) < 1:
            raise UserError(f"threads must be >= 1, got {threads}", field="threads")
        if int(batch_size) < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
        if int(sessions) < 1:
            raise UserError(f"sessions must be >= 1, got {sessions}", field="sessions")
        if statistic not in STATISTICS:
            raise UserError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}", field="statistic")
        if not isinstance(paired, bool):
            raise UserError(f"paired must be true or false, got {paired!r}", field="paired")
        if int8 not in INT8_MODES:
            raise UserError(f"int8 must be one of {', '.join(INT8_MODES)}, got {int8!r}", field="int8")
        self.threads = int(threads)
        self.batch_size = int(batch_size)
        self.input_shape = list(input_shape) if input_shape else None
        self.int8 = int8
        self.sessions = int(sessions)
        self.statistic = statistic
        self.timing = {"warmup": int(warmup), "min_repeats": int(min_repeats), "max_repeats": int(max_repeats), "max_seconds": float(max_seconds), "rel_tol": float(rel_tol)}
        self.paired = paired
        self._reference: Reference | None = None

    def config(self) -> dict[str, Any]:
        paired = {"paired": True} if self.paired else {}  # absent when off: earlier runs' cache keys stay valid
        return {"threads": self.threads, "batch_size": self.batch_size, "input_shape": self.input_shape, "int8": self.int8, "sessions": self.sessions, "statistic": self.statistic, **self.timing, **paired}

    def set_reference(self, model: nn.Module, example_input: torch.Tensor, measured: Mapping[str, float]) -> None:
        """With ``paired``, keep the base model's ONNX and its figures to time candidates against."""
        if not self.paired or "latency_ms" not in measured:
            return
        anchor = {k: float(measured[k]) for k in self.metrics if k in measured}
        if self._reference is not None and self._reference.anchor == anchor:
            return  # every candidate of a worker passes the same base figures
        self._reference = Reference(anchor, self.export, model, example_input)

    def describe(self) -> dict[str, Any]:
        return {"profile": self.name, **machine_description(), "threads": self.threads, "onnxruntime": version("onnxruntime"), "torch": version("torch")}

    def _input(self, example_input: torch.Tensor) -> torch.Tensor:
        shape = self.input_shape or list(example_input.shape[1:])
        return torch.zeros(self.batch_size, *shape)

    def export(self, model: nn.Module, example_input: torch.Tensor, path: Path) -> dict[str, Any]:
        """Write the deployable ONNX of ``model`` to ``path``; returns what was done."""
        x = self._input(example_input)
        float_model, low_bits = deployable(model)
        if low_bits and self.int8 == "auto":
            gen = torch.Generator().manual_seed(0)
            calib = [torch.randn(x.shape, generator=gen) for _ in range(2)]  # scales do not affect speed
            info = export_int8(float_model, x, calib, path)
            return {"format": "int8-qdq", "quantized_nodes": info["quantized_nodes"], "int8_scheme": info["scheme"]}
        export_onnx(float_model, x, path)
        return {"format": "float"}

    def _feed(self, example_input: torch.Tensor) -> dict[str, np.ndarray]:
        """The fixed input every timed run is fed (seeded: the same for every model)."""
        shape = tuple(self._input(example_input).shape)
        return {INPUT_NAME: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}

    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        if self._reference is not None:
            return self._measure_paired(model, example_input, self._reference)
        feed = self._feed(example_input)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_info = self.export(model, example_input, path)
            timings = []
            for _ in range(self.sessions):
                sess = onnx_session(path, threads=self.threads)
                timings.append(time_call(lambda: sess.run(None, feed), **self.timing))  # noqa: B023
                del sess
        medians = [t.median_ms for t in timings]
        per_session = [t.min_ms for t in timings] if self.statistic == "min" else medians
        iqr = float(np.median([t.iqr_ms for t in timings]))
        return Measurement(
            {"latency_ms": float(np.median(per_session)), "latency_ms_median": float(np.median(medians))},
            {"latency_ms": iqr, "latency_ms_median": iqr, "latency_ms_sessions": float(max(per_session) - min(per_session))},
            sum(t.repeats for t in timings),
            {**self.describe(), **export_info, "batch_size": self.batch_size},
        )

    def _measure_paired(self, model: nn.Module, example_input: torch.Tensor, ref: Reference) -> Measurement:
        """``model`` timed next to the base model, per session, scaled by the base's figures."""
        feed = self._feed(example_input)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            export_info = self.export(model, example_input, path)
            timings = []
            for _ in range(self.sessions):
                sess, base = onnx_session(path, threads=self.threads), onnx_session(ref.path, threads=self.threads)
                timings.append(paired_timing(lambda: sess.run(None, feed), lambda: base.run(None, feed), **self.timing))  # noqa: B023
                del sess, base
        ratio_min = float(np.median([t.ratio_min for t in timings]))
        ratio_median = float(np.median([t.ratio_median for t in timings]))
        anchor = ref.anchor
        latency = (ratio_min if self.statistic == "min" else ratio_median) * anchor["latency_ms"]
        spread = float(np.median([t.ratio_iqr for t in timings])) * anchor["latency_ms"]
        paired = {"ratio_min": ratio_min, "ratio_median": ratio_median, "reference": anchor, "reference_min_ms_now": min(t.reference_min_ms for t in timings), "rounds": sum(t.rounds for t in timings)}
        return Measurement(
            {"latency_ms": latency, "latency_ms_median": ratio_median * anchor.get("latency_ms_median", anchor["latency_ms"])},
            {"latency_ms": spread, "latency_ms_median": spread},
            sum(t.repeats for t in timings),
            {**self.describe(), **export_info, "batch_size": self.batch_size, "paired": paired},
        )


class Reference:
    """The base model exported once (a temporary file removed with this object) and the
    figures measured of it when the run started."""

    def __init__(self, anchor: dict[str, float], export: Callable[[nn.Module, torch.Tensor, Path], Any], model: nn.Module, example_input: torch.Tensor) -> None:
        self.anchor = anchor
        folder = tempfile.mkdtemp(prefix="automc-reference-")
        weakref.finalize(self, shutil.rmtree, folder, True)
        self.path = Path(folder) / "reference.onnx"
        export(model, example_input, self.path)
