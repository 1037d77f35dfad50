from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from automc.datasets import dataset_names, get_dataset, load_split
from automc.datasets.base import Split, draw_subsets, random_crop_flip
from automc.datasets.idx import read_idx
from automc.errors import UserError

pytestmark = pytest.mark.one_pass  # asserts nothing torch's thread count can change: the 1-thread pass covers it


def test_builtin_datasets_registered() -> None:
    assert {"cifar10", "mnist", "fashion-mnist", "digits"} <= set(dataset_names())


# --- subsets ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(10, 400),
    classes=st.integers(1, 7),
    a=st.integers(0, 50),
    b=st.integers(0, 50),
    seed=st.integers(0, 2**31),
)
def test_subsets_are_disjoint_deterministic_and_sized(n: int, classes: int, a: int, b: int, seed: int) -> None:
    labels = np.random.default_rng(seed).integers(0, classes, n)
    if a + b > n:
        with pytest.raises(UserError, match="need .* samples but the split has only"):
            draw_subsets(labels, {"calibration": a, "validation": b}, seed=seed)
        return
    subs = draw_subsets(labels, {"calibration": a, "validation": b, "test": None}, seed=seed)
    again = draw_subsets(labels, {"calibration": a, "validation": b, "test": None}, seed=seed)
    assert [len(subs[k]) for k in ("calibration", "validation", "test")] == [a, b, n - a - b]
    allidx = np.concatenate(list(subs.values()))
    assert len(np.unique(allidx)) == n  # disjoint and covering
    for k in subs:
        assert np.array_equal(subs[k], again[k])


def test_subsets_keep_class_proportions_and_depend_on_seed() -> None:
    labels = np.repeat(np.arange(10), [500] * 5 + [100] * 5)  # imbalanced: 3000 samples
    subs = draw_subsets(labels, {"val": 300}, seed=1)
    counts = np.bincount(labels[subs["val"]], minlength=10)
    assert list(counts) == [50] * 5 + [10] * 5
    other = draw_subsets(labels, {"val": 300}, seed=2)
    assert not np.array_equal(subs["val"], other["val"])


def test_only_last_subset_may_take_the_rest() -> None:
    with pytest.raises(UserError, match="only the last subset"):
        draw_subsets(np.zeros(10), {"a": None, "b": 2}, seed=0)


def test_random_crop_flip_pads_black_and_is_seeded() -> None:
    imgs = np.full((64, 8, 8, 3), 200, dtype=np.uint8)
    out1 = random_crop_flip(imgs, np.random.default_rng(0), pad=2)
    out2 = random_crop_flip(imgs, np.random.default_rng(0), pad=2)
    assert out1.shape == imgs.shape and np.array_equal(out1, out2)
    assert set(np.unique(out1)) == {0, 200}  # black border from the padding, image elsewhere
    ramp = np.tile(np.arange(8, dtype=np.uint8), (1, 8, 1))[..., None]  # value = column
    flipped = random_crop_flip(np.repeat(ramp, 32, 0), np.random.default_rng(3), pad=0)
    assert any(np.array_equal(f[..., 0], ramp[0, :, ::-1, 0]) for f in flipped)


# --- CIFAR-10 from tiny files the tests write --------------------------------------------


def _write_batch(path: Path, images_hwc: np.ndarray, labels: list[int]) -> None:
    data = images_hwc.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f, protocol=2)


def _rgb_images(n: int) -> np.ndarray:
    imgs = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    imgs[..., 0], imgs[..., 1], imgs[..., 2] = 10, 20, 30
    imgs[:, 0, 0, 0] = np.arange(n)
    return imgs


def test_cifar_python_batches(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _write_batch(folder / f"data_batch_{i}", _rgb_images(4), [i % 10] * 4)
    _write_batch(folder / "test_batch", _rgb_images(3), [0, 1, 2])
    ds = get_dataset("cifar10", tmp_path, verify=False)
    train, test = ds.load("train"), ds.load("test")
    assert len(train) == 20 and len(test) == 3
    assert test.images().shape == (3, 32, 32, 3)
    assert tuple(test.images()[1, 5, 5]) == (10, 20, 30)  # CHW rows converted to HWC correctly
    assert list(test.labels) == [0, 1, 2]
    assert ds.calibration_split() == "train"
    x, y = test.tensors()
    assert x.shape == (3, 3, 32, 32) and y.dtype.is_floating_point is False
    with pytest.raises(UserError, match="corrupt or not the expected file .*md5"):
        get_dataset("cifar10", tmp_path, verify=True).load("test")


def test_cifar_batch_unpickler_refuses_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": [0]}, protocol=2))
    with pytest.raises(UserError, match="not a CIFAR-10 python batch file .*not allowed"):
        get_dataset("cifar10", tmp_path, verify=False).load("test")


def test_cifar_npz_and_jpeg_splits(tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "cifar10"
    root.mkdir()
    imgs = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    np.savez_compressed(root / "test_exact_first1000.npz", images=imgs, labels=np.arange(6) % 10)
    blobs = []
    for im in imgs:
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), im.mean(), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
        blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])])
    np.savez_compressed(
        root / "train_jpeg_lossy_bytes.npz", jpeg_bytes=np.concatenate(blobs), offsets=offsets, labels=np.arange(6)
    )
    ds = get_dataset("cifar10", tmp_path, verify=False)
    exact = ds.load("test-exact")
    assert exact.exact and np.array_equal(exact.images(), imgs)
    jpeg = ds.load("train-jpeg")
    assert not jpeg.exact and len(jpeg) == 6 and jpeg.image_shape == (32, 32, 3)
    one = jpeg.images(np.array([2]))
    assert one.shape == (1, 32, 32, 3) and abs(float(one.mean()) - float(imgs[2].mean())) < 3
    assert jpeg.images().shape == (6, 32, 32, 3)  # decoding most of it caches the whole split
    assert ds.calibration_split() == "train-exact"  # no complete batches present


def test_missing_cifar_file_names_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        load_split("cifar10", "test-exact", tmp_path)
    msg = str(info.value)
    assert "test_exact_first1000.npz" in msg and str(tmp_path / "cifar10") in msg and "AUTOMC_DATA_DIR" in msg
    with pytest.raises(UserError, match="test_batch.*cifar-10-python.tar.gz"):
        load_split("cifar10", "test", tmp_path)


def test_unknown_split_lists_valid_splits(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no split 'val'; valid splits: train, test, test-exact"):
        load_split("cifar10", "val", tmp_path)


# --- MNIST-style idx files ----------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_reader_and_mnist_loader(tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    imgs = np.random.default_rng(1).integers(0, 255, (5, 28, 28), dtype=np.uint8)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(imgs)))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.arange(5)))  # uncompressed works too
    split = load_split("fashion-mnist", "test", tmp_path, verify=False)
    assert split.images().shape == (5, 28, 28, 1)
    assert np.array_equal(split.images()[..., 0], imgs)
    assert list(split.labels) == [0, 1, 2, 3, 4]
    with pytest.raises(UserError, match="corrupt or not the expected file"):
        load_split("fashion-mnist", "test", tmp_path, verify=True)
    (folder / "trunc.gz").write_bytes(gzip.compress(_idx(imgs)[:-10]))
    with pytest.raises(UserError, match="truncated"):
        read_idx(folder / "trunc.gz")
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz, which is not in"):
        load_split("fashion-mnist", "train", tmp_path)


# --- digits (embedded) ---------------------------------------------------------------------


def test_digits_needs_no_files_and_splits_are_fixed(tmp_path: Path) -> None:
    ds = get_dataset("digits", tmp_path)
    train, test, full = ds.load("train"), ds.load("test"), ds.load("all")
    assert (len(train), len(test), len(full)) == (1437, 360, 1797)
    assert train.image_shape == (8, 8, 1)
    assert np.bincount(test.labels).min() >= 35  # stratified
    key = lambda s: {(s.images()[i].tobytes(), int(s.labels[i])) for i in range(len(s))}  # noqa: E731
    assert not (key(train) & key(test)) or len(key(train) | key(test)) >= 1700
    x, _ = train.tensors()
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05  # normalisation constants fit


# --- the real files in ../shared/data -------------------------------------------------------


def test_real_cifar10_files(shared_data: Path) -> None:
    ds = get_dataset("cifar10", shared_data)
    exact = ds.load("test-exact")
    assert len(exact) == 1000 and np.bincount(exact.labels, minlength=10).sum() == 1000
    jpeg = ds.load("test-jpeg")
    assert len(jpeg) == 10000 and np.array_equal(jpeg.labels[:1000], exact.labels)
    err = np.abs(jpeg.images(np.arange(100)).astype(int) - exact.images(np.arange(100)).astype(int)).mean()
    assert 2 < err < 10  # the documented ~5.8/255 JPEG error
    tr_exact, tr_jpeg = ds.load("train-exact"), ds.load("train-jpeg")
    assert len(tr_exact) == 7728 and len(tr_jpeg) == 50000
    first = tr_jpeg.images(np.array([0, 1]))
    assert np.abs(first.astype(int) - tr_exact.images(np.array([0, 1])).astype(int)).mean() < 13
    # train-mixed: the JPEG copy with the exact images swapped in where they exist
    mixed = ds.load("train-mixed")
    where = np.load(shared_data / "cifar10" / "train_exact_subset.npz")["indices"]
    assert len(mixed) == 50000 and np.array_equal(mixed.labels, tr_jpeg.labels)
    assert np.array_equal(mixed.images(where[:5]), tr_exact.images(np.arange(5)))
    other = np.setdiff1d(np.arange(50000), where)[:5]
    assert np.array_equal(mixed.images(other), tr_jpeg.images(other))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_files(shared_data: Path, name: str) -> None:
    test = load_split(name, "test", shared_data)
    assert len(test) == 10000 and test.image_shape == (28, 28, 1)
    assert list(np.bincount(test.labels)) == ([1000] * 10 if name == "fashion-mnist" else list(np.bincount(test.labels)))


def test_splits_of_one_collection_know_their_shared_images() -> None:
    def split(name: str, ids: list[int], source: str = "train") -> Split:
        n = len(ids)
        return Split(dataset="toy", name=name, labels=np.zeros(n), images=np.zeros((n, 2, 2, 1), np.uint8), mean=(0.0,), std=(1.0,), source=(source, np.array(ids)))

    exact = split("train-exact", [3, 7, 9])  # a subset of the training collection
    full = split("train-jpeg", list(range(10)))  # a copy of all of it
    test = split("test", [0, 1, 2], source="test")
    assert list(full.shared_with(exact, np.array([0, 2]))) == [3, 9]  # copies of exact[0], exact[2]
    assert list(exact.shared_with(full, np.arange(8))) == [0, 1]
    assert len(full.shared_with(test, np.arange(3))) == 0  # another collection
    plain = Split(dataset="toy", name="a", labels=np.zeros(2), images=np.zeros((2, 2, 2, 1), np.uint8), mean=(0.0,), std=(1.0,))
    assert list(plain.shared_with(plain, np.array([1]))) == [1]  # a split is its own collection
