"""Datasets, found through the ``automc.datasets`` entry-point group.

Built-ins: ``cifar10``, ``mnist``, ``fashion-mnist``, ``digits`` (embedded, no files). The data
root is the ``data_dir`` argument, else ``$AUTOMC_DATA_DIR``, else a per-user default.
"""

from __future__ import annotations

from pathlib import Path

from automc.datasets.base import ImageDataset, Split, draw_subsets
from automc.registry import create, registry

DATASETS = registry("automc.datasets").set_contract(ImageDataset)


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str, data_dir: str | Path | None = None, *, verify: bool = True) -> ImageDataset:
    """Instantiate the dataset plugin ``name`` rooted at ``data_dir``."""
    dataset: ImageDataset = create(DATASETS.group, name, data_dir, verify=verify)
    return dataset


def load_split(name: str, split: str, data_dir: str | Path | None = None, *, verify: bool = True) -> Split:
    """Shortcut: ``get_dataset(name, data_dir).load(split)``."""
    return get_dataset(name, data_dir, verify=verify).load(split)


__all__ = ["DATASETS", "ImageDataset", "Split", "dataset_names", "draw_subsets", "get_dataset", "load_split"]
