"""int8 schemes on this CPU: agreement with the PyTorch model, accuracy and latency, side by side.

Pretrained ResNet-20, every layer at 8/8 bits (``mixed_precision --uniform 8``), BN and
activation ranges calibrated on 16×64 training images, exported to an onnxruntime QDQ graph
with each scheme of :mod:`automc.compress.int8` (the PyTorch fake quantisation built for the same
scheme), evaluated on the 1,000 pixel-exact CIFAR-10 test images. Latency: batch 1, one
thread, fastest run per session, median of 3 sessions (the ``onnxruntime-cpu`` profile's
statistic), float ONNX of the same model for reference. The last column is the adversarial
saturation probe (:func:`automc.compress.int8.saturation_probe`, error in output steps; ≤ 1 = exact).
Prints which scheme ``auto`` chose for this CPU and the CPU's int8-relevant flags.

    AUTOMC_DATA_DIR=../shared/data .venv/bin/python benchmarks/int8_schemes.py [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from automc.datasets import get_dataset
from automc.datasets.base import calibration_and_validation
from automc.measure.evaluator import Evaluator, EvaluatorConfig
from automc.results.int8_onnx import export_int8_checked
from automc.results.onnx import INPUT_NAME, export_onnx, onnx_session
from automc.compress.int8 import SCHEMES, cpu_features, recommended_scheme, saturation_probe
from automc.models import load_model
from automc.measure.profiles import time_call
from automc.settings import resolve_data_dir
from automc.search_spaces.mixed_precision import MixedPrecisionSpace


def latency_ms(path: Path, sessions: int = 3) -> float:
    """Fastest run per fresh session, median over sessions (batch 1, 1 thread)."""
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)}
    per_session = []
    for _ in range(sessions):
        sess = onnx_session(path, threads=1)
        per_session.append(time_call(lambda: sess.run(None, feed), max_seconds=2.0).min_ms)  # noqa: B023
    return float(np.median(per_session))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = resolve_data_dir(args.data_dir)
    ds = get_dataset("cifar10", data)
    split, cal = ds.load("test-exact"), ds.load(ds.calibration_split())
    cal_idx, val_idx = calibration_and_validation(split, cal, calibration=16 * 64, validation=None, seed=0)
    base = load_model("resnet20", weights="pretrained", data_dir=data)
    x1 = split.example_input(1)
    ev = Evaluator(split, val_idx, calibration=(cal, cal_idx), config=EvaluatorConfig(bn_calibration_batches=16))
    xv, yv = ev.data()
    features = cpu_features()
    auto = recommended_scheme(features)
    print(f"CPU: {features.model} ({features.arch}); int8 flags: {', '.join(sorted(features.summary()['int8_flags'])) or 'none'}; VNNI: {features.vnni}")
    print(f"auto -> {auto.name}: {auto.why}")
    results: dict = {"cpu": features.summary(), "auto": auto.name, "schemes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        float_ms = latency_ms(export_onnx(base, x1, Path(tmp) / "float.onnx"))
        results["float_latency_ms"] = float_ms
        print(f"{'scheme':14}{'torch acc':>11}{'int8 acc':>10}{'agreement':>11}{'latency ms':>12}{'vs float':>10}{'probe':>9}")
        print(f"{'float':14}{'':>11}{'':>10}{'':>11}{float_ms:>12.3f}{1.0:>10.2f}")
        for name in SCHEMES:
            space = MixedPrecisionSpace(base, x1, calibration=ev.calibration_batches(), int8_scheme=name)
            model = ev.prepare(space.apply(base, space.uniform("8")))
            torch_acc = ev(model, prepared=True)["accuracy"]
            path = Path(tmp) / f"{name}.onnx"
            check = export_int8_checked(model, x1, ev.calibration_batches(), path, xv, yv)
            ms = latency_ms(path)
            probe = saturation_probe(SCHEMES[name])
            results["schemes"][name] = {"torch_accuracy": torch_acc, "int8_accuracy": check["accuracy"], "agreement": check["top1_agreement_with_pytorch"], "latency_ms": ms, "probe_error_steps": probe}
            mark = "  <- auto" if name == auto.name else ""
            print(f"{name:14}{100 * torch_acc:>10.2f}%{100 * check['accuracy']:>9.2f}%{100 * check['top1_agreement_with_pytorch']:>10.2f}%{ms:>12.3f}{ms / float_ms:>10.2f}{probe:>9.1f}{mark}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
