"""CIFAR-10 from the original python batches or from the npz files kept in ``<data>/cifar10/``.

Splits:

* ``train`` / ``test`` — the complete, original ``cifar-10-batches-py`` folder (md5-verified),
  looked for at ``<data>/cifar10/cifar-10-batches-py`` and ``<data>/cifar-10-batches-py``;
* ``test-exact`` — the first 1,000 test images, pixel-exact (``test_exact_first1000.npz``);
* ``test-jpeg`` — all 10,000 test images from a lossy JPEG copy (``test_jpeg_lossy.npz``);
* ``train-exact`` — 7,728 pixel-exact training images (``train_exact_subset.npz``);
* ``train-jpeg`` — all 50,000 training images as JPEG bytes (``train_jpeg_lossy_bytes.npz``),
  decoded on demand.

Normalisation is the one the widely used pretrained CIFAR ResNets were trained with
(per-channel mean 0.485/0.456/0.406, std 0.229/0.224/0.225); the training augmentation is
4-pixel black padding + random 32×32 crop + horizontal flip.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from automc.datasets.base import ImageDataset, Split
from automc.errors import UserError
from automc.hashing import verify_file

BATCHES_DIR = "cifar-10-batches-py"
BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
NPZ_FILES = {
    "test-exact": ("test_exact_first1000.npz", "f703f27e1e156b91e1ec6d08d27006905dd84330dbe63ef805f84c00e62ccc03"),
    "test-jpeg": ("test_jpeg_lossy.npz", "49e2941ba3538f7cec485c94bc33d1c2a1d7314fc3676ba483db4da07b0a2ce7"),
    "train-exact": ("train_exact_subset.npz", "b6c61aae0620387e155b04bf0707f4778865bcfe01fe1b281e4a6b1b744db60b"),
    "train-jpeg": ("train_jpeg_lossy_bytes.npz", "34dd4128b03bf1523ce2c633975424648621d1238b2efe515e52209193b5f521"),
}
_BATCHES_HINT = (
    "extract cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html there, "
    "or use a split of the npz copy (test-exact, test-jpeg, train-exact, train-jpeg)"
)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batch files only: plain containers and numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes written by Python 3 under pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module.replace("numpy.core.", "numpy._core."), name)
        raise pickle.UnpicklingError(f"CIFAR batch file refers to {module}.{name}, which is not allowed")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one python batch file → (uint8 images N×32×32×3, int64 labels)."""
    with open(path, "rb") as f:
        try:
            entry = _BatchUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            raise UserError(f"{path} is not a CIFAR-10 python batch file ({exc}): replace it with the original") from None
    data = entry.get(b"data", entry.get("data")) if isinstance(entry, dict) else None
    labels = entry.get(b"labels", entry.get("labels")) if isinstance(entry, dict) else None
    if data is None or labels is None:
        raise UserError(f"{path} has no 'data'/'labels' entries: it is not a CIFAR-10 python batch file")
    images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


class CIFAR10(ImageDataset):
    name = "cifar10"
    num_classes = 10
    image_shape = (32, 32, 3)
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    augmentation = "crop-flip"
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    splits = {
        "train": "50,000 training images (original python batches)",
        "test": "10,000 test images (original python batches)",
        "test-exact": "first 1,000 test images, pixel-exact (npz)",
        "test-jpeg": "all 10,000 test images, lossy JPEG copy (npz)",
        "train-exact": "7,728 training images, pixel-exact (npz)",
        "train-jpeg": "all 50,000 training images, lossy JPEG copy (npz, decoded on demand)",
        "train-mixed": "all 50,000 training images: the 7,728 pixel-exact ones, the JPEG copy for the rest",
    }
    default_eval_split = "test"

    def eval_split(self) -> str:
        """The complete test split when present, else the exact 1,000-image subset."""
        if (self._batches_dir() / "test_batch").exists():
            return "test"
        return "test-exact" if (self.data_dir / "cifar10" / NPZ_FILES["test-exact"][0]).exists() else "test"

    def calibration_split(self) -> str:
        """The complete training split when its batches are present, else the exact subset."""
        return "train" if (self._batches_dir() / "data_batch_1").exists() else "train-exact"

    def _batches_dir(self) -> Path:
        for cand in (self.data_dir / "cifar10" / BATCHES_DIR, self.data_dir / BATCHES_DIR):
            if cand.is_dir():
                return cand
        return self.data_dir / "cifar10" / BATCHES_DIR

    def _load(self, split: str) -> Split:
        if split == "train-mixed":
            return self._mixed_split()
        if split in ("train", "test"):
            folder = self._batches_dir()
            names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
            images, labels = [], []
            for fname in names:
                path = self.require(folder / fname, f"split {split!r}", _BATCHES_HINT)
                if self.verify:
                    verify_file(path, md5=BATCH_MD5[fname])
                x, y = read_batch(path)
                images.append(x)
                labels.append(y)
            y = np.concatenate(labels)
            return self._split(split, y, np.concatenate(images), source=(split, np.arange(len(y))))

        fname, sha = NPZ_FILES[split]
        path = self.require(self.data_dir / "cifar10" / fname, f"split {split!r}")
        if self.verify:
            verify_file(path, sha256=sha)
        with np.load(path, allow_pickle=False) as npz:
            if split == "train-jpeg":
                return self._jpeg_split(split, path, npz)
            for key in ("images", "labels"):
                if key not in npz:
                    raise UserError(f"{path} has no '{key}' array: it is not the expected CIFAR-10 npz file")
            images = np.asarray(npz["images"], dtype=np.uint8)
            labels = np.asarray(npz["labels"], dtype=np.int64)
            # which original image each one is: train-exact lists them, the test copies are
            # the test set's first N images
            ids = np.asarray(npz["indices"], dtype=np.int64) if "indices" in npz else np.arange(len(labels))
        exact = split.endswith("-exact")
        return self._split(split, labels, images, exact=exact, source=(split.split("-")[0], ids))

    def _mixed_split(self) -> Split:
        """The JPEG copy of the training set with its 7,728 pixel-exact images swapped in."""
        jpeg = self.load("train-jpeg")
        fname, sha = NPZ_FILES["train-exact"]
        path = self.require(self.data_dir / "cifar10" / fname, "split 'train-mixed'")
        if self.verify:
            verify_file(path, sha256=sha)
        with np.load(path, allow_pickle=False) as npz:
            if "indices" not in npz:
                raise UserError(f"{path} has no 'indices' array: it is not the expected CIFAR-10 exact-subset file")
            exact = np.asarray(npz["images"], dtype=np.uint8)
            where = np.full(len(jpeg), -1, dtype=np.int64)
            where[np.asarray(npz["indices"], dtype=np.int64)] = np.arange(len(exact))
        ids = ("train", np.arange(len(jpeg)))

        def decode(i: int) -> np.ndarray:
            return exact[where[i]] if where[i] >= 0 else jpeg.images(np.array([i]))[0]

        return self._split("train-mixed", jpeg.labels, decode=decode, image_shape=self.image_shape, exact=False, source=ids)

    def _jpeg_split(self, split: str, path: Path, npz: Any) -> Split:
        for key in ("jpeg_bytes", "offsets", "labels"):
            if key not in npz:
                raise UserError(f"{path} has no '{key}' array: it is not the expected CIFAR-10 JPEG-bytes file")
        blob = np.asarray(npz["jpeg_bytes"], dtype=np.uint8)
        offsets = np.asarray(npz["offsets"], dtype=np.int64)
        labels = np.asarray(npz["labels"], dtype=np.int64)
        if len(offsets) != len(labels) + 1:
            raise UserError(f"{path}: {len(offsets)} offsets for {len(labels)} labels (expected labels + 1)")

        def decode(i: int) -> np.ndarray:
            from PIL import Image

            with Image.open(io.BytesIO(blob[offsets[i] : offsets[i + 1]].tobytes())) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)

        return self._split(split, labels, decode=decode, image_shape=self.image_shape, exact=False, source=("train", np.arange(len(labels))))
