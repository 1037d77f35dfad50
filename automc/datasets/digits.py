"""scikit-learn's bundled handwritten digits (1,797 images of 8×8): needs no files at all.

The 0–16 grey levels are stored as uint8 (×255/16, rounded; the 17 levels stay distinct).
``train`` / ``test`` are a fixed stratified 80/20 split (seed 0, drawn by automc itself so it
does not change with scikit-learn's version).
"""

from __future__ import annotations

import numpy as np

from automc.datasets.base import ImageDataset, Split, draw_subsets

TEST_SIZE = 360
SPLIT_SEED = 0


class Digits(ImageDataset):
    name = "digits"
    num_classes = 10
    image_shape = (8, 8, 1)
    mean = (0.3053,)
    std = (0.3759,)
    class_names = tuple(str(i) for i in range(10))
    splits = {
        "train": "1,437 images (fixed stratified 80%)",
        "test": "360 images (fixed stratified 20%)",
        "all": "all 1,797 images",
    }

    def _load(self, split: str) -> Split:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        labels = bunch.target.astype(np.int64)
        if split != "all":
            idx = draw_subsets(labels, {"test": TEST_SIZE, "train": None}, seed=SPLIT_SEED)[split]
            images, labels = images[idx], labels[idx]
        return self._split(split, labels, np.ascontiguousarray(images))
