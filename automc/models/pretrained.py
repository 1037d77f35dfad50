"""Known pretrained checkpoints: where to find them locally and, for users with a network,
where to download them (always verified by sha256)."""

from __future__ import annotations

import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from automc.errors import UserError
from automc.hashing import verify_file

_AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"


@dataclass(frozen=True)
class PretrainedFile:
    """One checkpoint file: its name under ``<data_dir>/weights/``, checksum and origin."""

    filename: str
    sha256: str
    url: str
    dataset: str
    reported_top1: float
    source: str


PRETRAINED: dict[str, PretrainedFile] = {
    "resnet20": PretrainedFile(
        "resnet20-12fca82f.pt",
        "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
        _AKAMASTER + "resnet20-12fca82f.th",
        "cifar10",
        91.78,
        "akamaster/pytorch_resnet_cifar10 (BSD-2-Clause, Y. Idelbayev)",
    ),
    "resnet32": PretrainedFile(
        "resnet32-d509ac18.pt",
        "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850",
        _AKAMASTER + "resnet32-d509ac18.th",
        "cifar10",
        92.78,
        "akamaster/pytorch_resnet_cifar10 (BSD-2-Clause, Y. Idelbayev)",
    ),
    "resnet44": PretrainedFile(
        "resnet44-014dd654.pt",
        "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4",
        _AKAMASTER + "resnet44-014dd654.th",
        "cifar10",
        93.14,
        "akamaster/pytorch_resnet_cifar10 (BSD-2-Clause, Y. Idelbayev)",
    ),
    "resnet56": PretrainedFile(
        "resnet56-4bfd9763.pt",
        "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
        _AKAMASTER + "resnet56-4bfd9763.th",
        "cifar10",
        93.62,
        "akamaster/pytorch_resnet_cifar10 (BSD-2-Clause, Y. Idelbayev)",
    ),
}


def pretrained_path(model_name: str, data_dir: Path, *, download: bool = True) -> Path:
    """Local path of ``model_name``'s pretrained checkpoint under ``data_dir/weights``.

    A missing file is downloaded (sha256-checked) when ``download`` is true; tests and
    offline machines keep the file in the data directory instead.
    """
    entry = PRETRAINED.get(model_name)
    if entry is None:
        known = ", ".join(sorted(PRETRAINED))
        raise UserError(
            f"no pretrained weights are known for model {model_name!r} (known: {known}): "
            "pass --weights PATH to your own checkpoint"
        )
    path = data_dir / "weights" / entry.filename
    if not path.exists():
        if not download:
            raise UserError(f"pretrained weights for {model_name} are missing: put {entry.filename} in {path.parent}")
        _download(entry.url, path)
    verify_file(path, sha256=entry.sha256)
    return path


def _download(url: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (fixed https URL)
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    except OSError as exc:
        raise UserError(
            f"could not download {url} ({exc}): download it yourself and save it as {dest}, "
            "or point --data-dir / AUTOMC_DATA_DIR at a folder whose weights/ holds it"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
