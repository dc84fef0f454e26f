"""Tiny datasets in the real on-disk formats, written by the tests (nothing is downloaded).

Each class gets its own mean colour / brightness, so a model can tell classes apart after a few steps;
the tests still never assert an accuracy, only that the pipeline measures one.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def _class_images(n: int, shape: tuple[int, ...], n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    base = (y[:, None] * (200 // max(1, n_classes - 1))).astype(np.float64)
    x = rng.integers(0, 40, size=(n, int(np.prod(shape)))) + base
    return np.clip(x, 0, 255).astype(np.uint8).reshape(n, *shape), y.astype(np.int64)


def write_cifar10(root: Path, n_train: int = 40, n_test: int = 20, batches: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    per = n_train // batches
    for i in range(batches):
        x, y = _class_images(per, (3072,), 10, seed=i)
        (root / f"data_batch_{i + 1}").write_bytes(pickle.dumps({b"data": x, b"labels": y.tolist()}, protocol=2))
    x, y = _class_images(n_test, (3072,), 10, seed=99)
    (root / "test_batch").write_bytes(pickle.dumps({b"data": x, b"labels": y.tolist()}, protocol=2))
    return root


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def write_mnist(root: Path, n_train: int = 60, n_test: int = 30, gz: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    x, y = _class_images(n_train, (28, 28), 10, seed=1)
    _idx(root / "train-images-idx3-ubyte", x, gz)
    _idx(root / "train-labels-idx1-ubyte", y, gz)
    x, y = _class_images(n_test, (28, 28), 10, seed=2)
    _idx(root / "t10k-images-idx3-ubyte", x, gz)
    _idx(root / "t10k-labels-idx1-ubyte", y, gz)
    return root


def write_svhn(root: Path, n_train: int = 60, n_test: int = 30) -> Path:
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 3), ("test", n_test, 4)):
        x, y = _class_images(n, (32, 32, 3), 10, seed)
        y = np.where(y == 0, 10, y)  # SVHN writes the digit 0 as label 10
        savemat(str(root / f"{split}_32x32.mat"), {"X": x.transpose(1, 2, 3, 0), "y": y.reshape(-1, 1).astype(np.uint8)})
    return root


def write_tfd(root: Path, n: int = 80, size: int = 8) -> Path:
    """A TFD-like file: `images` N x size x size, `folds` N x 5 (0 unlabelled, 1 train, 2 valid, 3 test)."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    x, _ = _class_images(n, (size, size), 4, seed=5)
    folds = np.tile(np.array([1, 1, 2, 3, 0])[np.arange(n) % 5][:, None], (1, 5)).astype(np.uint8)
    savemat(str(root / f"TFD_{size}x{size}.mat"), {"images": x, "folds": folds})
    return root


def write_imagenet(root: Path, classes: int = 3, per_class: int = 4, val_per_class: int = 2, size: int = 8) -> Path:
    """ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG of tiny solid-ish images."""
    from PIL import Image

    rng = np.random.default_rng(7)
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = np.clip(rng.integers(0, 30, (size, size, 3)) + 80 * c, 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"img_{i}.JPEG", quality=90)
    return root
