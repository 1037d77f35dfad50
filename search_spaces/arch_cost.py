"""MACs and parameters of a :class:`~automc.models.factorized.FactorizedNet` from its stage
specs, without building it: what the target projection and the RL clamp evaluate thousands
of times on the ``architecture`` space.

Counted as :func:`automc.compress.analysis.analyze` counts a built network: MACs of
convolutions (output pixels × input channels per group × kernel area) and of the classifier;
parameters of every layer (weights, biases, BatchNorm's scale and shift). The test suite
checks both against ``analyze`` on sampled architectures.
"""

from __future__ import annotations

from collections.abc import Sequence

from automc.models.factorized import StageSpec


def _out(size: int, kernel: int, stride: int) -> int:
    pad = (kernel - 1) // 2
    return (size + 2 * pad - kernel) // stride + 1


class _Counter:
    def __init__(self, hw: tuple[int, int]) -> None:
        self.hw = hw
        self.macs = 0
        self.params = 0

    def conv(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, *, bias: bool = False, bn: bool = True, hw: tuple[int, int] | None = None) -> tuple[int, int]:
        h, w = hw or self.hw
        oh, ow = _out(h, kernel, stride), _out(w, kernel, stride)
        self.macs += oh * ow * cout * (cin // groups) * kernel * kernel
        self.params += cout * (cin // groups) * kernel * kernel + (cout if bias else 0) + (2 * cout if bn else 0)
        return oh, ow

    def se(self, channels: int, squeezed: int) -> None:
        self.conv(channels, squeezed, bias=True, bn=False, hw=(1, 1))
        self.conv(squeezed, channels, bias=True, bn=False, hw=(1, 1))


def network_cost(
    stages: Sequence[StageSpec],
    in_channels: int,
    input_hw: tuple[int, ...],
    stem: int,
    head: int,
    num_classes: int,
) -> tuple[int, int, list[int]]:
    """``(MACs, parameters, MACs of each stage)`` of the network ``stages`` builds."""
    c = _Counter((int(input_hw[0]), int(input_hw[1])))
    c.hw = c.conv(in_channels, stem, 3, 1)
    cin = stem
    per_stage = []
    for spec in stages:
        before = c.macs
        for i in range(spec.layers):
            stride = spec.stride if i == 0 else 1
            cin = _block(c, spec, cin, stride)
        per_stage.append(c.macs - before)
    c.conv(cin, head, 1)
    c.macs += head * num_classes
    c.params += head * num_classes + num_classes
    return c.macs, c.params, per_stage


def _block(c: _Counter, spec: StageSpec, cin: int, stride: int) -> int:
    """Count one layer of ``spec`` (as :class:`automc.models.factorized.Block` builds it);
    returns its output channels and moves the counter's spatial size."""
    k, cout = spec.kernel, spec.channels
    squeezed = max(1, int(cin * spec.se))
    if spec.op == "conv":
        c.hw = c.conv(cin, cout, k, stride)
        if spec.se > 0:
            c.se(cout, squeezed)
    elif spec.op == "dwsep":
        c.hw = c.conv(cin, cin, k, stride, groups=cin)
        if spec.se > 0:
            c.se(cin, squeezed)
        c.conv(cin, cout)
    else:
        hidden = cin * int(spec.op.removeprefix("mbconv"))
        if hidden != cin:
            c.conv(cin, hidden)
        c.hw = c.conv(hidden, hidden, k, stride, groups=hidden)
        if spec.se > 0:
            c.se(hidden, squeezed)
        c.conv(hidden, cout)
    return cout
