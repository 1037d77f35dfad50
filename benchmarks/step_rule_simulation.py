"""The channel-step rules on a simulated noisy runtime: paired rounds vs medians of rounds.

A runtime computing in blocks of 8 channels (a layer costs ceil(in/8) × ceil(out/8) units)
whose measurements now and then run ``--slow`` times slower (each with probability ``--p``,
seeded) — the kind of spell a 2-core guest shows at two threads. For each seed the step is
measured on ``small_cnn`` (width 16, 8×8 inputs) with ``--rounds`` rounds and read by both rules
from the same measurements: the paired rule of ``device_profiles/steps.py`` (with its extra
rounds) and the earlier one (each model's median over the first ``--rounds`` rounds, then
probe over twin; :func:`step_repeat.medians_rule`). The right answer is 8. Seconds to run::

    .venv/bin/python benchmarks/step_rule_simulation.py --p 0.25 0.35 --seeds 12
"""

from __future__ import annotations

import argparse
import math
import random
from collections import Counter

import torch
from step_repeat import medians_rule
from torch import nn

from automc.device_profiles.widths import derive_widths
from automc.measure.profiles import DeviceProfile, Measurement
from automc.models import build_model
from automc.search_spaces.channel_pruning import ChannelPruningSpace

BLOCK = 8


class NoisyBlocked(DeviceProfile):
    """Blocks of ``BLOCK`` channels; a measurement is ``slow`` times slower with probability ``p``."""

    name = "noisy_blocked"
    metrics = ("latency_ms",)

    def __init__(self, seed: int, p: float, slow: float) -> None:
        self.rng, self.p, self.slow = random.Random(seed), p, slow

    def measure(self, model: nn.Module, example_input: torch.Tensor) -> Measurement:
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        units = sum(math.ceil(getattr(m, "in_channels", getattr(m, "in_features", 0)) / BLOCK) * math.ceil(getattr(m, "out_channels", getattr(m, "out_features", 0)) / BLOCK) for m in layers)
        factor = self.slow if self.rng.random() < self.p else 1.0
        return Measurement({"latency_ms": (0.01 + 0.1 * units) * factor})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--p", type=float, nargs="+", default=[0.25, 0.35], help="probability of a slow measurement")
    ap.add_argument("--slow", type=float, default=1.6)
    ap.add_argument("--seeds", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, x = build_model("small_cnn", in_channels=1, kwargs={"width": 16}).eval(), torch.zeros(1, 1, 8, 8)
    space = ChannelPruningSpace(model, x, lbound=0.2)
    for p in args.p:
        paired, medians = Counter(), Counter()
        for seed in range(args.seeds):
            where = derive_widths(NoisyBlocked(seed, p, args.slow), model, space, x, context="step", rounds=args.rounds)["measured_on"]
            paired[where["step"]] += 1
            medians[medians_rule(where, args.rounds, where["min_efficiency"])] += 1
        print(f"p {p}: paired rounds read {dict(paired)}; medians of the first {args.rounds} rounds read {dict(medians)} (right: {BLOCK}; {args.seeds} seeds)")


if __name__ == "__main__":
    main()
