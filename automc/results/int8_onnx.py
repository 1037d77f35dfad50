"""Real int8 QDQ ONNX graphs via onnxruntime.

``export_int8`` hands the float graph to ``onnxruntime.quantization.quantize_static`` (QDQ
format, per-channel symmetric int8 weights, asymmetric activations, MinMax calibration on the
given batches; conv/linear outputs are not re-quantised, matching the fake-quantised PyTorch
model). The data types and weight range are the int8 scheme's (:mod:`automc.compress.int8`): the one
the model's 8-bit layers were quantised for, or this CPU's for a float model. Only layers that
are 8-bit in the model (``w_bits == a_bits == 8``, linear grid) are quantised by onnxruntime —
or every Conv/Gemm when the model holds no quantised layer; layers at other bit-widths (and
k-means codebooks, which no int8 grid represents) stay as their fake-quantised float
computation in the graph.

The check that follows an export reports, beside the int8 graph's top-1 agreement with the
PyTorch model, the agreement the PyTorch model reaches *with itself* when its 8-bit inputs are
rounded slightly differently (:func:`rounding_jitter_agreement`). onnxruntime rounds int32
biases and requantisation scales where PyTorch keeps float, so a correct int8 graph differs
from the fake-quantised model by occasional ±1 steps; how many predictions that flips is a
property of the model (its margins and how it amplifies noise), not of the export. An
agreement near that floor is as good as int8 can be; one well below it means a mismatch.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.compress.int8 import SCHEMES, Int8Scheme, cpu_features, resolve_scheme, scheme_note
from automc.compress.quant import quant_layers
from automc.errors import UserError
from automc.results.onnx import INPUT_NAME, export_onnx, quiet, run_onnx


def int8_layer_names(model: nn.Module) -> list[str] | None:
    """Layers onnxruntime should quantise: the 8/8-bit linear-grid ones, or None for 'all'
    (float model)."""
    layers = quant_layers(model)
    if not layers:
        return None
    return [n for n, m in layers.items() if m.w_bits == 8 and m.a_bits == 8 and m.weight_quantizer == "linear"]


def model_int8_scheme(model: nn.Module, explicit: str | None = None) -> Int8Scheme:
    """The scheme to export ``model`` with: ``explicit`` (``auto``: this CPU's), else the one its
    8-bit layers were quantised for, else this CPU's (float models). An explicit scheme whose
    weight grid is not the one the 8-bit layers were quantised on is refused: onnxruntime would
    re-round those weights and the int8 graph would no longer be the measured model (u8s8 and
    s8s8 share a grid; u8s8-reduced's is 7-bit)."""
    layers = quant_layers(model)
    found = {getattr(layers[n], "int8_scheme", "u8s8") for n in int8_layer_names(model) or []}
    if len(found) > 1:
        raise ValueError(f"the model's 8-bit layers were quantised for different int8 schemes: {sorted(found)}")
    own = resolve_scheme(found.pop()) if found else None
    if explicit is None:
        return own or resolve_scheme("auto")
    chosen = resolve_scheme(explicit)
    if own is not None and chosen.weight_qmax != own.weight_qmax:
        fits = " or ".join(n for n, s in SCHEMES.items() if s.weight_qmax == own.weight_qmax)
        raise UserError(
            f"int8_scheme {chosen.name}: the model's 8-bit weights are on the {own.name} grid (±{own.weight_qmax}); "
            f"export with {fits}, or compress again with the space's int8_scheme={chosen.name}",
            field="int8_scheme",
        )
    return chosen


def node_module(node: Any) -> str | None:
    """The module path an ONNX node was exported from, if the exporter recorded it.

    TorchScript exporter: names like ``/layer1/layer1.0/conv1/Conv`` (each scope segment ends
    with that level's child name). Dynamo exporter: ``pkg.torch.onnx.name_scopes`` metadata.
    """
    for prop in getattr(node, "metadata_props", []):
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s for s in prop.value.strip("[]").replace("'", "").split(", ") if s]
            return scopes[-2] if len(scopes) >= 2 else None
    parts = node.name.split("/")
    if len(parts) < 3 or parts[0] != "":
        return None
    return ".".join(seg.rsplit(".", 1)[-1] for seg in parts[1:-1])


def _nodes_for(onnx_model: Any, layer_names: Sequence[str] | None) -> list[str]:
    """ONNX node names (Conv/Gemm/MatMul) exported from the given modules."""
    ops = {"Conv", "Gemm", "MatMul"}
    nodes = [n for n in onnx_model.graph.node if n.op_type in ops]
    if layer_names is None:
        return [n.name for n in nodes]
    wanted = set(layer_names)
    return [n.name for n in nodes if node_module(n) in wanted]


def _unquantized_consumers_read_float(path: Path, quantized: Sequence[str]) -> int:
    """Give every non-quantised consumer of a quantised activation its float tensor back.

    onnxruntime's QDQ quantiser replaces a tensor by its Q→DQ output for *all* consumers, so
    a residual ``Add`` that shares its input with a quantised conv adds the quantised value,
    while the PyTorch fake-quantised model (and a deployment that keeps float tensors between
    layers) quantises only the conv's own input. On ResNet-20 that difference alone made
    logits differ by 0.1 (median) from layer1.1 on. Returns how many inputs were rewired.
    """
    import onnx

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    producer = {o: n for n in nodes for o in n.output}
    wanted = set(quantized)
    float_of: dict[str, str] = {}
    for n in nodes:
        if n.op_type == "DequantizeLinear":
            q = producer.get(n.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                float_of[n.output[0]] = q.input[0]
    rewired = 0
    for n in nodes:
        if n.name in wanted or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(n.input):
            if name in float_of:
                n.input[i] = float_of[name]
                rewired += 1
    if rewired:
        onnx.save(model, str(path))
    return rewired


class _Reader:
    """onnxruntime CalibrationDataReader over a list of input batches."""

    def __init__(self, batches: Sequence[torch.Tensor]) -> None:
        self._it = iter([{INPUT_NAME: b.numpy().astype(np.float32)} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def export_int8(
    model: nn.Module,
    example_input: torch.Tensor,
    calibration: Sequence[torch.Tensor],
    path: str | Path,
    *,
    scheme: str | None = None,
) -> dict[str, Any]:
    """Write a QDQ int8 ONNX of ``model``'s 8-bit layers; returns what was quantised, with
    which scheme, on which CPU."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    chosen = model_int8_scheme(model, scheme)
    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    layers = int8_layer_names(model)
    float_model = copy.deepcopy(model).eval()
    for name, m in quant_layers(float_model).items():
        if layers is not None and name in layers:
            m.act_quant_enabled = False  # onnxruntime inserts the real activation QDQ instead
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        src = export_onnx(float_model, example_input, Path(tmp) / "float.onnx")
        nodes = _nodes_for(onnx.load(str(src)), layers)
        if not nodes:
            raise ValueError("the model has no 8-bit conv/linear layer to export as int8")
        with quiet():
            quantize_static(
                str(src),
                str(path),
                _Reader(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=chosen.reduce_range,
                activation_type=qtype[chosen.activation_type],
                weight_type=qtype[chosen.weight_type],
                nodes_to_quantize=nodes,
                calibrate_method=CalibrationMethod.MinMax,
                # Like the fake-quantised PyTorch model, quantise layer inputs and weights but
                # not conv/linear outputs: top-1 agreement 98.9% -> 99.5% on ResNet-20.
                extra_options={
                    "WeightSymmetric": True,
                    "ActivationSymmetric": False,
                    "OpTypesToExcludeOutputQuantization": ["Conv", "Gemm", "MatMul"],
                },
            )
        rewired = _unquantized_consumers_read_float(path, nodes)
    info: dict[str, Any] = {
        "path": str(path),
        "quantized_nodes": len(nodes),
        "float_inputs_restored": rewired,
        "layers": layers if layers is not None else "all",
        **chosen.summary(),
        "exported_on": cpu_features().summary(),
    }
    note = scheme_note(chosen)
    if note:
        info["note"] = note
    return info


JITTER_STEPS = 0.05  # the rounding jitter of the agreement floor, in quantisation steps


def rounding_jitter_agreement(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None, *, lsb: float = JITTER_STEPS, seed: int = 0, reference: torch.Tensor | None = None
) -> float | None:
    """Top-1 agreement of ``model`` with itself when the input of every 8-bit layer in
    ``layers`` is moved by a uniform ``±lsb/2`` of its quantisation step before rounding, so
    that values within that distance of a rounding boundary round the other way (a 0.05-step
    jitter flips about 5% of them by one step). None for a float model (no 8-bit inputs).
    ``reference``: the model's top-1 predictions on ``x``, when the caller has them already."""
    if layers is None:
        return None
    quant = quant_layers(model)
    targets = [quant[n] for n in layers if quant[n].act_quant_enabled]
    if not targets:
        return None
    gen = torch.Generator().manual_seed(seed)

    def jitter(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        noise = (torch.rand(inputs[0].shape, generator=gen) - 0.5) * lsb * module.a_scale
        return (inputs[0] + noise.to(inputs[0].dtype), *inputs[1:])

    model.eval()
    with torch.no_grad():
        ref = model(x).argmax(1) if reference is None else reference
        hooks = [m.register_forward_pre_hook(jitter) for m in targets]  # type: ignore[attr-defined]
        try:
            moved = model(x).argmax(1)
        finally:
            for h in hooks:
                h.remove()
    return float((ref == moved).float().mean())


def export_int8_checked(
    model: nn.Module,
    example_input: torch.Tensor,
    calibration: Sequence[torch.Tensor],
    path: str | Path,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    scheme: str | None = None,
) -> dict[str, Any]:
    """:func:`export_int8`, then run the int8 graph on the validation images: its accuracy
    and its top-1 agreement with the PyTorch model (what a deployer needs to trust it).
    The scheme and the CPU it was checked on are part of the result (agreement depends on
    the CPU's int8 kernels), and so is the model's own agreement under rounding jitter, the
    floor against which the int8 graph's agreement is read (see the module docstring)."""
    path = Path(path)
    info = export_int8(model, example_input, calibration, path, scheme=scheme)
    with torch.no_grad():
        torch_pred = model.eval()(x_val).argmax(1)
    ort_pred = run_onnx(path, x_val).argmax(1)
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "quantized_nodes": info["quantized_nodes"],
        "top1_agreement_with_pytorch": float(np.mean(ort_pred == torch_pred.numpy())),
        "top1_agreement_under_rounding_jitter": rounding_jitter_agreement(model, x_val, info["layers"] if info["layers"] != "all" else None, reference=torch_pred),
        "accuracy": float(np.mean(ort_pred == y_val.numpy())),
        "images": int(len(y_val)),
        **{k: v for k, v in info.items() if k not in ("path", "quantized_nodes", "layers", "float_inputs_restored")},
    }


def agreement_text(info: dict[str, Any]) -> str:
    """One line for people: the int8 graph's accuracy and agreement, and the floor to read
    the agreement against (the model's own agreement under rounding jitter)."""
    text = f"accuracy {100 * info['accuracy']:.2f}%, top-1 agreement with PyTorch {100 * info['top1_agreement_with_pytorch']:.2f}% over {info['images']} images"
    floor = info.get("top1_agreement_under_rounding_jitter")
    if floor is not None:
        text += f" (PyTorch with itself under {JITTER_STEPS:g}-step rounding jitter: {100 * floor:.2f}%)"
    return text
