"""Dataset plugin base, splits held as uint8 images, and deterministic subsets.

Every dataset keeps images as ``uint8`` arrays of shape (N, H, W, C) and converts batches to
normalised float tensors (N, C, H, W) on demand, so a 10,000-image split costs 30 MB, not
120 MB, until an evaluator materialises the subset it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from automc.errors import UserError
from automc.settings import resolve_data_dir


def draw_subsets(
    labels: np.ndarray,
    sizes: Mapping[str, int | None],
    *,
    seed: int,
    stratified: bool = True,
) -> dict[str, np.ndarray]:
    """Draw disjoint index subsets (e.g. calibration / validation / test) from one split.

    Subsets are taken in the order of ``sizes`` from one seeded ordering of the split, so they
    never overlap and are identical for the same seed, sizes and labels. With ``stratified``,
    that ordering interleaves classes so every prefix keeps the split's class proportions.
    A size of ``None`` (last entry only) takes everything that is left.
    """
    n = len(labels)
    names = list(sizes)
    fixed = {k: v for k, v in sizes.items() if v is not None}
    for k, v in fixed.items():
        if int(v) < 0:
            raise UserError(f"subset size {k}={v} must be >= 0", field=k)
    if any(v is None for k, v in sizes.items() if k != names[-1]):
        raise UserError("only the last subset may take 'the rest' (size None)")
    total = sum(int(v) for v in fixed.values())
    if total > n:
        asked = ", ".join(f"{k}={v}" for k, v in fixed.items())
        raise UserError(f"subsets ({asked}) need {total} samples but the split has only {n}: make them smaller")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if stratified and n:
        lab = np.asarray(labels)[order]
        classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
        rank = np.zeros(n, dtype=np.float64)
        seen = np.zeros(len(classes), dtype=np.int64)
        for i, c in enumerate(inverse):  # rank of each sample within its class, in random order
            rank[i] = seen[c]
            seen[c] += 1
        key = (rank + 0.5) / counts[inverse]
        order = order[np.argsort(key, kind="stable")]
    out: dict[str, np.ndarray] = {}
    start = 0
    for name in names:
        size = sizes[name]
        stop = n if size is None else start + int(size)
        out[name] = np.sort(order[start:stop])
        start = stop
    return out


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Standard CIFAR augmentation on raw uint8 (N,H,W,C) images.

    Zero (black) padding by ``pad`` pixels, a random crop back to H×W and a random horizontal
    flip — the same as torchvision's ``RandomCrop(H, padding=pad)`` + ``RandomHorizontalFlip``
    before ``ToTensor``/``Normalize``. Padding in raw pixel space matters: pretrained CIFAR
    checkpoints' BatchNorm statistics were accumulated on such black-bordered crops.
    """
    n, h, w, c = images.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=images.dtype)
    padded[:, pad : pad + h, pad : pad + w] = images
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    rows = dy[:, None] + np.arange(h)
    cols = dx[:, None] + np.arange(w)
    out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    return np.ascontiguousarray(out)


AUGMENTATIONS = {"crop-flip": random_crop_flip}


def calibration_and_validation(
    split: "Split", calibration_split: "Split", *, calibration: int, validation: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Seeded index subsets: ``calibration`` images of ``calibration_split`` and ``validation``
    images of ``split`` (None: all of it). When both are the same split they are drawn
    disjointly, calibration taking at most half of it and validation the rest if None."""
    if calibration_split is split:
        n_cal = min(calibration, len(split) // 2)
        n_val = None if validation is None else min(validation, len(split) - n_cal)
        subs = split.subsets({"calibration": n_cal, "validation": n_val}, seed=seed)
        return subs["calibration"], subs["validation"]
    cal = calibration_split.subsets({"calibration": min(calibration, len(calibration_split))}, seed=seed)["calibration"]
    val = None if validation is None else split.subsets({"validation": min(validation, len(split))}, seed=seed)["validation"]
    return cal, val


class Split:
    """One split: labels, uint8 images (in memory or decoded on demand) and normalisation."""

    def __init__(
        self,
        *,
        dataset: str,
        name: str,
        labels: np.ndarray,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        images: np.ndarray | None = None,
        decode: Callable[[int], np.ndarray] | None = None,
        image_shape: tuple[int, int, int] | None = None,
        class_names: tuple[str, ...] = (),
        exact: bool = True,
        augmentation: str | None = None,
        source: tuple[str, np.ndarray] | None = None,
    ) -> None:
        if (images is None) == (decode is None):
            raise ValueError("give exactly one of images or decode")
        self.dataset = dataset
        self.name = name
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.class_names = class_names
        self.exact = exact
        if augmentation is not None and augmentation not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {augmentation!r}; valid: {', '.join(AUGMENTATIONS)}")
        self.augmentation = augmentation
        # (collection, ids): which image of a larger collection each sample is, so splits that
        # are copies or subsets of one collection (CIFAR's exact / JPEG / mixed training
        # copies) can tell they share images; None: this split is its own collection
        self.source = (name, np.arange(len(self.labels))) if source is None else (source[0], np.asarray(source[1], dtype=np.int64))
        self._images = images
        self._decode = decode
        if images is not None:
            if images.dtype != np.uint8 or images.ndim != 4:
                raise ValueError(f"images must be uint8 (N,H,W,C), got {images.dtype} {images.shape}")
            if len(images) != len(self.labels):
                raise ValueError(f"{len(images)} images but {len(self.labels)} labels")
            image_shape = tuple(images.shape[1:])  # type: ignore[assignment]
        if image_shape is None:
            raise ValueError("image_shape is required with decode")
        self.image_shape: tuple[int, int, int] = image_shape  # (H, W, C)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"Split({self.dataset}/{self.name}, n={len(self)}, shape={self.image_shape})"

    def shared_with(self, other: Split, indices: np.ndarray) -> np.ndarray:
        """Positions in this split of the images ``other[indices]`` are copies of (none when
        the two come from different collections)."""
        if self.dataset != other.dataset or self.source[0] != other.source[0]:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.isin(self.source[1], other.source[1][np.asarray(indices)]))

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else int(self.labels.max()) + 1

    def images(self, indices: np.ndarray | None = None) -> np.ndarray:
        """uint8 images (n, H, W, C) for ``indices`` (all when None)."""
        if self._images is not None:
            return self._images if indices is None else self._images[np.asarray(indices)]
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)
        if len(idx) > len(self) // 2:  # most of the split: decode it all once and keep it
            assert self._decode is not None
            self._images = np.stack([self._decode(int(i)) for i in range(len(self))])
            self._decode = None
            return self._images[idx]
        out = np.empty((len(idx), *self.image_shape), dtype=np.uint8)
        for j, i in enumerate(idx):
            out[j] = self._decode(int(i))  # type: ignore[misc]
        return out

    def normalize(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (n,H,W,C) → float32 (n,C,H,W) scaled to [0,1] and normalised."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        y = (x - mean) / std
        # canonical NCHW strides (contiguous() keeps NHWC ones for C = 1: a view(n, -1) then fails)
        return torch.empty(y.shape, dtype=y.dtype).copy_(y)

    def augment(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The dataset's training augmentation applied to raw uint8 images (identity if none)."""
        if self.augmentation is None:
            return images
        return AUGMENTATIONS[self.augmentation](images, rng)

    def tensors(
        self, indices: np.ndarray | None = None, *, augment_rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised inputs and int64 targets for ``indices`` (all when None).

        With ``augment_rng``, the training augmentation is applied first (seeded by it).
        """
        labels = self.labels if indices is None else self.labels[np.asarray(indices)]
        images = self.images(indices)
        if augment_rng is not None:
            images = self.augment(images, augment_rng)
        return self.normalize(images), torch.from_numpy(labels.copy())

    def batches(self, indices: np.ndarray | None = None, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield normalised (x, y) batches in index order."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices)
        for start in range(0, len(idx), batch_size):
            yield self.tensors(idx[start : start + batch_size])

    def subsets(self, sizes: Mapping[str, int | None], *, seed: int, stratified: bool = True) -> dict[str, np.ndarray]:
        """Disjoint, seeded index subsets of this split (see :func:`draw_subsets`)."""
        return draw_subsets(self.labels, sizes, seed=seed, stratified=stratified)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """A zero tensor of the model input shape, for tracing and export."""
        h, w, c = self.image_shape
        return torch.zeros(batch_size, c, h, w)


class ImageDataset:
    """Base class of dataset plugins (entry-point group ``automc.datasets``).

    Subclasses set the class attributes and implement :meth:`_load` for each name in
    ``splits``. Instances cache loaded splits.
    """

    name: ClassVar[str] = ""
    num_classes: ClassVar[int] = 0
    image_shape: ClassVar[tuple[int, int, int]] = (0, 0, 0)  # H, W, C
    mean: ClassVar[tuple[float, ...]] = ()
    std: ClassVar[tuple[float, ...]] = ()
    class_names: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[dict[str, str]] = {}  # split name → one-line description
    augmentation: ClassVar[str | None] = None  # training augmentation (see AUGMENTATIONS)
    default_eval_split: ClassVar[str] = "test"
    default_train_split: ClassVar[str] = "train"

    def __init__(self, data_dir: str | Path | None = None, *, verify: bool = True) -> None:
        self.data_dir = resolve_data_dir(data_dir)
        self.verify = verify
        self._cache: dict[str, Split] = {}

    @property
    def in_channels(self) -> int:
        return self.image_shape[2]

    def eval_split(self) -> str:
        """Split evaluated on by default."""
        return self.default_eval_split

    def calibration_split(self) -> str:
        """Split that BN-calibration (and fine-tuning) batches come from by default."""
        return self.default_train_split

    def load(self, split: str) -> Split:
        """Load one split by name; unknown names list the valid ones."""
        if split not in self.splits:
            valid = ", ".join(self.splits)
            raise UserError(f"dataset {self.name!r} has no split {split!r}; valid splits: {valid}", field="split")
        if split not in self._cache:
            self._cache[split] = self._load(split)
        return self._cache[split]

    def _load(self, split: str) -> Split:  # pragma: no cover - abstract
        raise NotImplementedError

    def _split(self, split: str, labels: np.ndarray, images: np.ndarray | None = None, **kw: object) -> Split:
        return Split(
            dataset=self.name,
            name=split,
            labels=labels,
            images=images,
            mean=self.mean,
            std=self.std,
            class_names=self.class_names,
            augmentation=self.augmentation,
            **kw,  # type: ignore[arg-type]
        )

    def require(self, path: Path, what: str, hint: str = "") -> Path:
        """Return ``path`` or raise the one-line 'missing file' error naming where it goes."""
        if not path.exists():
            raise UserError(
                f"{self.name} {what} needs {path.name}, which is not in {path.parent}: put the file there, "
                f"or point --data-dir / AUTOMC_DATA_DIR (now {self.data_dir}) at the folder that holds it"
                + (f"; {hint}" if hint else "")
            )
        return path
