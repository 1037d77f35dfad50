"""MNIST and Fashion-MNIST from the original idx files (``.gz`` or uncompressed).

Files live in ``<data>/mnist/`` and ``<data>/fashion-mnist/`` under their original names
(``train-images-idx3-ubyte.gz`` …); the gzip files are md5-verified against the published values.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np

from automc.datasets.base import ImageDataset, Split
from automc.errors import UserError
from automc.hashing import verify_file

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) of unsigned bytes into an array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"cannot read {path} ({exc}): replace it with the original idx file") from None
    if len(raw) < 4:
        raise UserError(f"{path} is too short to be an idx file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes (magic {raw[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    expected = int(np.prod(dims))
    if body.size != expected:
        raise UserError(f"{path} is truncated or padded: header says {dims} ({expected} bytes), body has {body.size}")
    return body.reshape(dims)


class _IdxDataset(ImageDataset):
    folder: ClassVar[str] = ""
    md5: ClassVar[dict[str, str]] = {}
    image_shape = (28, 28, 1)
    num_classes = 10
    splits = {"train": "60,000 training images", "test": "10,000 test images"}

    def _find(self, stem: str, split: str) -> Path:
        base = self.data_dir / self.folder
        for cand in (base / f"{stem}.gz", base / stem):
            if cand.exists():
                return cand
        return self.require(base / f"{stem}.gz", f"split {split!r}")

    def _load(self, split: str) -> Split:
        img_stem, lab_stem = _FILES[split]
        img_path, lab_path = self._find(img_stem, split), self._find(lab_stem, split)
        if self.verify:
            for p in (img_path, lab_path):
                if p.name in self.md5:
                    verify_file(p, md5=self.md5[p.name])
        images = read_idx(img_path)
        labels = read_idx(lab_path).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{img_path} and {lab_path} do not match: images {images.shape}, labels {labels.shape}")
        return self._split(split, labels, np.ascontiguousarray(images[..., None]))


class MNIST(_IdxDataset):
    name = "mnist"
    folder = "mnist"
    mean = (0.1307,)
    std = (0.3081,)
    class_names = tuple(str(i) for i in range(10))
    md5 = {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }


class FashionMNIST(_IdxDataset):
    name = "fashion-mnist"
    folder = "fashion-mnist"
    mean = (0.2860,)
    std = (0.3530,)
    class_names = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
    md5 = {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }
