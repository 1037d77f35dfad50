"""ONNX export of (compressed) models, and running the exported graphs with onnxruntime.

``export_onnx`` uses PyTorch's TorchScript-based exporter (0.2 s for a ResNet-20, and node
names that carry module paths), falling back to the dynamo exporter where that fails (e.g. a
fused transformer-encoder op). It prints nothing on success; when both fail, one line names
the op and what to do.
Real int8 graphs are :mod:`automc.results.int8_onnx`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from automc.errors import UserError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporters: Python warnings and logging, and everything written to file
    descriptors 1 and 2 (the TorchScript exporter prints whole IR graphs from C++ there)."""
    with warnings.catch_warnings(), tempfile.TemporaryFile() as sink:
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            logging.disable(previous)


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # the dynamo exporter colours its messages
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def export_onnx(model: nn.Module, example_input: torch.Tensor, path: str | Path, *, opset: int = 17) -> Path:
    """Write ``model`` (eval mode, dynamic batch axis) as ONNX to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    kwargs: dict[str, Any] = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "dynamic_axes": {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        "opset_version": opset,
    }
    with quiet(), torch.no_grad():
        try:
            torch.onnx.export(model, (example_input,), str(path), dynamo=False, **kwargs)
        except Exception as first:  # noqa: BLE001 - the TorchScript exporter is deprecated upstream
            kwargs.pop("dynamic_axes")
            kwargs["opset_version"] = max(opset, 18)
            try:
                try:  # the dynamo exporter names the batch axis through dynamic_shapes; a size-1
                    # example dimension would be specialised, so it traces a batch of two
                    batch = {0: torch.export.Dim("batch")}
                    two = example_input if len(example_input) > 1 else torch.cat([example_input, example_input])
                    torch.onnx.export(model, (two,), str(path), dynamo=True, dynamic_shapes=(batch,), **kwargs)
                except Exception:  # noqa: BLE001 - a model whose shapes cannot be symbolic: fixed batch
                    torch.onnx.export(model, (example_input,), str(path), dynamo=True, **kwargs)
            except Exception as second:  # noqa: BLE001 - both exporters refused this model
                raise UserError(
                    f"ONNX export of {type(model).__name__} failed: {_first_line(first)} (dynamo exporter: {_first_line(second)}); "
                    "replace or wrap that op with ONNX-exportable ones, or keep the layer out of compression (keep_layers)",
                    field="model",
                ) from None
    return path


def onnx_session(path: str | Path, threads: int = 1) -> Any:
    """An onnxruntime CPU session with a fixed intra-op thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def run_onnx(path_or_session: Any, x: torch.Tensor | np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of an ONNX model for ``x`` (in batches)."""
    sess = path_or_session if hasattr(path_or_session, "run") else onnx_session(path_or_session)
    arr = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    outs = [sess.run(None, {INPUT_NAME: arr[i : i + batch_size].astype(np.float32)})[0] for i in range(0, len(arr), batch_size)]
    return np.concatenate(outs)
