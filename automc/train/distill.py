"""Knowledge distillation from the uncompressed model (the teacher) to a compressed one.

Three kinds, each switched on by name and weighted from the config
(:class:`automc.config.DistillConfig`):

* ``response`` (Hinton et al. 2015): KL divergence between the softened class distributions,
  temperature ``T``, scaled by ``T²``; the loss is ``(1 - alpha) · CE + alpha · KD``;
* ``feature`` (FitNets hints, Romero et al. 2015): mean squared error between the student's
  and the teacher's feature maps at matched points. Compression keeps module names, so the
  points match by name; where pruning narrowed a point, a learned 1×1 convolution (an
  *adapter*, discarded after training) maps the student's channels to the teacher's;
* ``relation``: ``similarity`` (similarity-preserving KD, Tung & Mori 2019: the batch's
  sample-by-sample similarity matrices at each point agree) or ``distance`` (RKD, Park et
  al. 2019: normalised pairwise distances of the last point's pooled features agree). Both
  compare samples with each other, so widths need no adapter.

Feature points default to the *stage outputs*: for every spatial resolution above 1×1 the
forward pass produces, the last module to finish among the shallowest ones (``layer1``, ``layer2``,
``layer3`` of a CIFAR ResNet). ``layers`` names them instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automc.compress.analysis import forward_with_hooks
from automc.errors import UserError

MAX_AUTO_POINTS = 4


def _outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, int, torch.Size]]]:
    """The model's output and, in the order modules finish, (name, depth, output shape) of
    every parametrised module called exactly once whose output is one tensor."""
    calls: dict[str, int] = {}
    seen: list[tuple[str, int, torch.Size]] = []
    names = {m: n for n, m in model.named_modules() if n and any(True for _ in m.parameters())}

    def hook(m: nn.Module, inputs: Any, out: Any) -> None:
        name = names[m]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(out, torch.Tensor):
            seen.append((name, name.count("."), out.shape))

    y = forward_with_hooks(model, x, hook, lambda m: m in names)
    return y, [s for s in seen if calls[s[0]] == 1]


def stage_points(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """The stage outputs of ``model`` (see the module docstring), at most the last
    :data:`MAX_AUTO_POINTS` resolutions."""
    _, seen = _outputs(model, example_input)
    by_res: dict[tuple[int, ...], list[tuple[str, int]]] = {}
    for name, depth, shape in seen:
        if len(shape) == 4 and shape[2] * shape[3] > 1:  # 1×1 maps are pooled vectors (SE, heads)
            by_res.setdefault(tuple(shape[2:]), []).append((name, depth))
    points = []
    for mods in by_res.values():
        shallowest = min(d for _, d in mods)
        points.append([n for n, d in mods if d == shallowest][-1])
    return points[-MAX_AUTO_POINTS:]


def match_points(
    teacher: nn.Module, student: nn.Module, example_input: torch.Tensor, layers: Sequence[str] | Mapping[str, str] | None
) -> dict[str, tuple[str, int, int]]:
    """``student point → (teacher point, student channels, teacher channels)``; one-line
    UserError when a named layer is missing or the two points' shapes cannot be matched."""
    if layers is None:
        pairs = {n: n for n in stage_points(teacher, example_input)}
        if not pairs:
            raise UserError("finetune.distill: the teacher has no 4-D feature maps to hint: name them in finetune.distill.layers or drop 'feature'/'relation'", field="finetune.distill.layers")
    elif isinstance(layers, Mapping):
        pairs = dict(layers)
    else:
        pairs = {n: n for n in layers}
    _, t_seen = _outputs(teacher, example_input)
    _, s_seen = _outputs(student, example_input)
    t_shapes = {n: s for n, _, s in t_seen}
    s_shapes = {n: s for n, _, s in s_seen}
    out: dict[str, tuple[str, int, int]] = {}
    for s_name, t_name in pairs.items():
        for who, name, shapes, model in (("student", s_name, s_shapes, student), ("teacher", t_name, t_shapes, teacher)):
            if name not in shapes:
                known = dict(model.named_modules())
                why = "is not a module of the model" if name not in known else "is not called exactly once with one tensor output"
                hint = ", ".join(stage_points(model, example_input)) or "none"
                raise UserError(f"finetune.distill.layers: {name!r} {why} ({who}); stage outputs: {hint}", field="finetune.distill.layers")
        ts, ss = t_shapes[t_name], s_shapes[s_name]
        if len(ts) != len(ss) or ts[2:] != ss[2:]:
            raise UserError(f"finetune.distill.layers: {s_name!r} gives {tuple(ss)} but the teacher's {t_name!r} gives {tuple(ts)}: pick points of equal spatial size", field="finetune.distill.layers")
        out[s_name] = (t_name, int(ss[1]), int(ts[1]))
    return out


@contextmanager
def tapped(model: nn.Module, names: Sequence[str], store: dict[str, torch.Tensor]) -> Iterator[None]:
    """Record the outputs of modules ``names`` into ``store`` while the block runs."""
    handles = []
    for name in names:

        def hook(m: nn.Module, inputs: Any, out: Any, name: str = name) -> None:
            store[name] = out

        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def response_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1), reduction="batchmean", log_target=True) * (t * t)


def similarity_kd(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD: ``‖G_s − G_t‖²_F / b²`` with row-normalised Gram matrices."""
    b = student_feat.shape[0]
    gs = F.normalize(student_feat.reshape(b, -1) @ student_feat.reshape(b, -1).t(), dim=1)
    gt = F.normalize(teacher_feat.reshape(b, -1) @ teacher_feat.reshape(b, -1).t(), dim=1)
    return (gs - gt).pow(2).sum() / (b * b)


def distance_kd(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """RKD distance loss on globally pooled features: pairwise distances, each normalised by
    its mean, compared with the Huber loss."""

    def normalised(f: torch.Tensor) -> torch.Tensor:
        e = f.flatten(2).mean(2) if f.dim() > 2 else f
        d = torch.cdist(e, e)
        return d / d[d > 0].mean().clamp_min(1e-12)

    return F.smooth_l1_loss(normalised(student_feat), normalised(teacher_feat))


class Distiller(nn.Module):
    """Computes the recovery loss of a student batch against the teacher.

    Holds the feature adapters (its only parameters, trained with the student); the teacher
    runs in eval mode without gradients.
    """

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        example_input: torch.Tensor,
        *,
        kinds: Sequence[str],
        temperature: float,
        alpha: float,
        feature_weight: float,
        relation_weight: float,
        relation: str,
        layers: Sequence[str] | Mapping[str, str] | None,
    ) -> None:
        super().__init__()
        self.teacher = [teacher]  # a list: not a sub-module (not trained, not in state_dict)
        self.kinds = tuple(kinds)
        self.temperature = float(temperature)
        self.alpha = float(alpha) if "response" in self.kinds else 0.0
        self.feature_weight = float(feature_weight)
        self.relation_weight = float(relation_weight)
        self.relation = relation
        self.points: dict[str, tuple[str, int, int]] = {}
        if "feature" in self.kinds or "relation" in self.kinds:
            self.points = match_points(teacher, student, example_input, layers)
        self.adapters = nn.ModuleDict()
        if "feature" in self.kinds:
            for s_name, (_, sc, tc) in self.points.items():
                if sc != tc:
                    self.adapters[s_name.replace(".", "__")] = nn.Conv2d(sc, tc, 1, bias=False)

    def adapter_shapes(self) -> dict[str, tuple[int, int]]:
        """``student point → (student channels, teacher channels)`` of each adapter built."""
        return {s: (sc, tc) for s, (_, sc, tc) in self.points.items() if s.replace(".", "__") in self.adapters}

    def forward(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted loss of ``student`` on batch (``x``, ``y``) and its terms (floats)."""
        teacher = self.teacher[0]
        s_feats: dict[str, torch.Tensor] = {}
        t_feats: dict[str, torch.Tensor] = {}
        t_names = [t for t, _, _ in self.points.values()]
        t_logits = None
        if self.kinds:
            with torch.no_grad(), tapped(teacher, t_names, t_feats):
                t_logits = teacher(x)
        with tapped(student, list(self.points), s_feats):
            s_logits = student(x)
        ce = F.cross_entropy(s_logits, y)
        terms = {"ce": float(ce.detach())}
        loss = (1.0 - self.alpha) * ce
        if "response" in self.kinds and t_logits is not None:
            kd = response_kd(s_logits, t_logits, self.temperature)
            terms["response"] = float(kd.detach())
            loss = loss + self.alpha * kd
        if "feature" in self.kinds:
            hint = sum(
                (F.mse_loss(self._adapt(s, s_feats[s]), t_feats[t]) for s, (t, _, _) in self.points.items()),
                s_logits.new_zeros(()),
            ) / max(1, len(self.points))
            terms["feature"] = float(hint.detach())
            loss = loss + self.feature_weight * hint
        if "relation" in self.kinds:
            if self.relation == "similarity":
                rel = sum((similarity_kd(s_feats[s], t_feats[t]) for s, (t, _, _) in self.points.items()), s_logits.new_zeros(()))
            else:
                s, (t, _, _) = list(self.points.items())[-1]
                rel = distance_kd(s_feats[s], t_feats[t])
            terms["relation"] = float(rel.detach())
            loss = loss + self.relation_weight * rel
        terms["loss"] = float(loss.detach())
        return loss, terms

    def _adapt(self, point: str, feat: torch.Tensor) -> torch.Tensor:
        key = point.replace(".", "__")
        return self.adapters[key](feat) if key in self.adapters else feat
