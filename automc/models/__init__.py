"""Model zoo, user model factories and checkpoint loading.

Models are found through the ``automc.models`` entry-point group (built-ins: ``resnet20``,
``resnet32``, ``resnet44``, ``resnet56``, ``resnet110``, ``mobilenetv2``, ``small_cnn``, and the
lightweight families ``mobilenetv1``, ``squeezenet``, ``shufflenetv2``, ``ghostnet``,
``densenet_bc``) or
given as ``package.module:function`` — a factory the user wrote that returns an
``nn.Module``. Weights are read with ``torch.load(..., weights_only=True)`` or from
``.safetensors`` files: never unpickled.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from automc.errors import UserError, user_code_error
from automc.registry import create, registry

MODELS = registry("automc.models")


# The dataset a zoo model is meant for, used when a command is given no --dataset.
DEFAULT_DATASETS = {
    "resnet20": "cifar10",
    "resnet32": "cifar10",
    "resnet44": "cifar10",
    "resnet56": "cifar10",
    "resnet110": "cifar10",
    "mobilenetv2": "cifar10",
    "small_cnn": "digits",
    "mobilenetv1": "cifar10",
    "squeezenet": "cifar10",
    "shufflenetv2": "cifar10",
    "ghostnet": "cifar10",
    "densenet_bc": "cifar10",
}


def default_dataset(model_name: str) -> str:
    """The zoo model's usual dataset; user models must name theirs."""
    if model_name not in DEFAULT_DATASETS:
        raise UserError(f"model {model_name!r} has no default dataset: pass --dataset", field="dataset")
    return DEFAULT_DATASETS[model_name]


def model_names() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()


def build_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build a model by registered name or ``module:function`` factory.

    ``num_classes`` and ``in_channels`` (usually taken from the dataset) are passed only if
    the factory accepts them and ``kwargs`` does not already set them.
    """
    try:
        model = create(MODELS.group, name, config=kwargs, optional={"num_classes": num_classes, "in_channels": in_channels})
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the factory rejected its settings (or is broken): say where
        raise user_code_error(f"model {name!r}" + (f" with kwargs {dict(kwargs)}" if kwargs else "") + " cannot be built", exc, field="model.kwargs") from exc
    if not isinstance(model, nn.Module):
        raise UserError(f"model factory {name!r} returned {type(model).__name__}; it must return a torch.nn.Module")
    return model


def _extract_state_dict(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state dict in common checkpoint layouts; return it and the other entries."""
    meta: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                meta = {k: v for k, v in obj.items() if k != key and not isinstance(v, (Mapping, torch.Tensor))}
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no state_dict (a mapping of parameter names to tensors): save one with torch.save(model.state_dict(), path)")
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel / DDP
        state = {k[len("module."):]: v for k, v in state.items()}
    return state, meta


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint's state dict and its other (plain) entries, read without running code:
    ``.safetensors`` with safetensors, anything else with ``torch.load(weights_only=True)``
    (tensors and plain containers only; a pickle of other objects is refused, not loaded)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu")), {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"cannot read weights file {path}: it is not a valid safetensors file ({str(exc).splitlines()[0]})") from None
    try:
        with warnings.catch_warnings():  # torch warns before refusing a pickle: the one line below says it
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types on foreign or corrupt files
        why = (
            "it holds pickled Python objects besides tensors, which automc never unpickles"
            if "unsupported global" in str(exc).lower()
            else f"it is damaged or not a PyTorch tensor checkpoint ({type(exc).__name__})"
        )
        raise UserError(f"cannot read weights file {path}: {why}; pass a checkpoint of tensors only, saved with torch.save(model.state_dict(), path)") from None
    return _extract_state_dict(obj, path)


def load_weights(model: nn.Module, path: str | os.PathLike[str], *, model_name: str = "model") -> dict[str, Any]:
    """Load a checkpoint into ``model`` with ``strict=True`` semantics; return its metadata.

    A file that does not fit the architecture raises :class:`UserError` naming the first
    differences, rather than PyTorch's multi-line error.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file {p} does not exist: check --weights (use 'pretrained' for the known CIFAR ResNets)")
    state, meta = read_state_dict(p)
    expected = model.state_dict()
    ignorable = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state and k not in ignorable]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]} in file vs model)")
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise UserError(
            f"weights file {p} does not fit model {model_name!r}: {'; '.join(parts)}. "
            "Pass the checkpoint trained for this architecture, or the --model it was trained with"
        )
    # BatchNorm fills in num_batches_tracked for checkpoints saved before it existed.
    model.load_state_dict(state, strict=True)
    return meta


def resolve_weights(weights: str | os.PathLike[str] | None, model_name: str, data_dir: Path) -> Path | None:
    """Turn a ``--weights`` value into a path: ``None``, a file path, or ``'pretrained'``."""
    if weights is None or str(weights) == "":
        return None
    if str(weights) == "pretrained":
        from automc.models.pretrained import pretrained_path

        return pretrained_path(model_name, data_dir)
    return Path(weights).expanduser()


def load_model(
    name: str,
    *,
    weights: str | os.PathLike[str] | None = None,
    data_dir: Path | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build ``name`` and load ``weights`` into it; returns the model in eval mode."""
    from automc.settings import resolve_data_dir

    model = build_model(name, num_classes=num_classes, in_channels=in_channels, kwargs=kwargs)
    path = resolve_weights(weights, name, data_dir or resolve_data_dir())
    if path is not None:
        load_weights(model, path, model_name=name)
    return model.eval()


__all__ = ["MODELS", "build_model", "load_model", "load_weights", "model_names", "resolve_weights"]
