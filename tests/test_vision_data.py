"""Paper-scale loaders and evaluation protocols, on tiny fixtures made here."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.errors import UsageError
from milestones.harness.records import Case
from milestones.suites import _vision_data as V

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _jpeg(path, size=(40, 30), colour=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


def _ctx(**kw):
    return CaseContext.for_case(Case("alexnet", "alexnet-owt-paper", "quality", "paper", "cpu", "float32", 2), **kw)


# ------------------------------------------------------------------------------------------ ImageNet
def test_image_folder_orders_classes_and_skips_non_images(tmp_path):
    for wnid, n in (("n02", 2), ("n01", 1)):
        for i in range(n):
            _jpeg(tmp_path / wnid / f"img{i}.JPEG")
    (tmp_path / "n01" / "notes.txt").write_text("not an image")
    samples, classes = V.image_folder(tmp_path)
    assert classes == ["n01", "n02"]
    assert [(p.parent.name, y) for p, y in samples] == [("n01", 0), ("n02", 1), ("n02", 1)]


def test_imagenet_root_with_train_fixes_class_order(tmp_path):
    for wnid in ("n01", "n02", "n03"):
        (tmp_path / "train" / wnid).mkdir(parents=True)
    _jpeg(tmp_path / "val" / "n03" / "a.JPEG")
    samples, classes = V.imagenet_val(tmp_path)
    assert classes == ["n01", "n02", "n03"] and samples[0][1] == 2


@pytest.mark.parametrize("text", [
    "ILSVRC2012_val_00000002.JPEG n01\nILSVRC2012_val_00000001.JPEG n02\n",
    "ImageId,PredictionString\nILSVRC2012_val_00000001,n02 1 2 3 4\nILSVRC2012_val_00000002,n01 5 6 7 8\n",
    "n02\nn01\n",
])
def test_flat_validation_layout_label_files(tmp_path, text):
    for i in (1, 2):
        _jpeg(tmp_path / "val" / f"ILSVRC2012_val_0000000{i}.JPEG")
    (tmp_path / "val" / "labels.txt").write_text(text)
    samples, classes = V.imagenet_val(tmp_path / "val")
    assert classes == ["n01", "n02"]
    assert [(p.name[-6], y) for p, y in samples] == [("1", 1), ("2", 0)]


def test_devkit_ground_truth_needs_and_uses_meta_mat(tmp_path):
    from scipy.io import savemat

    for i in (1, 2, 3):
        _jpeg(tmp_path / f"ILSVRC2012_val_0000000{i}.JPEG")
    gt = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    gt.write_text("2\n1\n2\n")
    with pytest.raises(UsageError, match="meta.mat"):
        V.imagenet_val(tmp_path)
    # Devkit IDs are not in WNID order: ID 1 -> n09, ID 2 -> n01; a non-leaf synset (ID 3) is ignored.
    syn = np.zeros(3, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for k, (i, w, c) in enumerate(((1, "n09", 0), (2, "n01", 0), (3, "n00", 2))):
        syn[k] = (i, w, c)
    savemat(tmp_path / "meta.mat", {"synsets": syn})
    samples, classes = V.imagenet_val(tmp_path, classes=["n01", "n09"])
    assert [y for _, y in samples] == [0, 1, 0]


def test_bad_labels_and_paths_raise_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such path"):
        V.imagenet_val(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        V.imagenet_val(tmp_path / "empty")
    _jpeg(tmp_path / "flat" / "a.JPEG")
    with pytest.raises(UsageError, match="without a labels file"):
        V.imagenet_val(tmp_path / "flat")
    (tmp_path / "flat" / "labels.txt").write_text("b.JPEG n01\n")
    with pytest.raises(UsageError, match="no label for image a.JPEG"):
        V.imagenet_val(tmp_path / "flat")
    (tmp_path / "flat" / "labels.txt").write_text("a.JPEG n07\n")
    with pytest.raises(UsageError, match="not a known class"):
        V.imagenet_val(tmp_path / "flat", classes=["n01"])
    (tmp_path / "bad.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(UsageError, match="cannot decode"):
        V.load_image(tmp_path / "bad.JPEG")


def test_data_path_skips_when_absent_and_refuses_a_missing_path(tmp_path):
    with pytest.raises(SkipCase, match="needs --data imagenet=PATH"):
        V.data_path(_ctx(), "imagenet")
    with pytest.raises(UsageError, match="no such path"):
        V.data_path(_ctx(data={"imagenet": str(tmp_path / "missing")}), "imagenet")
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(UsageError, match="expected a folder"):
        V.data_path(_ctx(data={"imagenet": str(f)}), "imagenet")


# ----------------------------------------------------------------------------------------- protocols
def test_ten_crop_takes_corners_centre_and_reflections():
    t = torch.arange(2 * 5 * 6, dtype=torch.float32).view(2, 5, 6)
    crops = V.ten_crop(t, 3)
    assert crops.shape == (10, 2, 3, 3)
    assert torch.equal(crops[0], t[:, :3, :3]) and torch.equal(crops[1], t[:, :3, 3:])
    assert torch.equal(crops[2], t[:, 2:, :3]) and torch.equal(crops[3], t[:, 2:, 3:])
    assert torch.equal(crops[4], t[:, 1:4, 1:4])
    assert torch.equal(crops[5:], crops[:5].flip(-1))
    with pytest.raises(ValueError):
        V.ten_crop(t, 6)


def test_protocol_views_shapes_and_normalisation():
    img = Image.new("RGB", (400, 300), (255, 0, 128))
    centre = V.view_center(img)
    assert centre.shape == (1, 3, 224, 224)
    want = (torch.tensor([255, 0, 128]) / 255.0 - torch.tensor(V.IMAGENET_MEAN)) / torch.tensor(V.IMAGENET_STD)
    assert torch.allclose(centre[0, :, 100, 100], want, atol=1e-5)
    assert V.view_ten_patches_alexnet(img).shape == (10, 3, 224, 224)
    assert V.view_ten_crop_resnet(img).shape == (10, 3, 224, 224)
    assert V.resize_shorter(img, 256).size == (341, 256)


def test_alexnet_patches_come_from_the_central_square_resnet_crops_from_the_whole_image():
    # A 512x256 image, left half black, right half white: ResNet's corner crops reach the left edge
    # (black) of the 512x256 image; AlexNet's come from the central 256x256, which straddles both halves.
    img = Image.new("RGB", (512, 256), (0, 0, 0))
    img.paste((255, 255, 255), (256, 0, 512, 256))
    rn, ax = V.view_ten_crop_resnet(img), V.view_ten_patches_alexnet(img)
    black = (0 - V.IMAGENET_MEAN[0]) / V.IMAGENET_STD[0]
    assert torch.allclose(rn[0, 0], torch.full((224, 224), black), atol=1e-4)
    assert ax[0, 0, :, :96].max() < black + 1e-3 and ax[0, 0, :, 200:].min() > 0


class _ConstantClass(torch.nn.Module):
    """Predicts `cls` for every image; logits of shape (N, n_classes)."""

    def __init__(self, cls, n_classes=4):
        super().__init__()
        self.cls, self.n = cls, n_classes

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.n)
        out[:, self.cls] = 1.0
        return out


def test_evaluate_counts_top1_top5_against_folder_labels(tmp_path):
    for wnid, n in (("n01", 3), ("n02", 1)):
        for i in range(n):
            _jpeg(tmp_path / wnid / f"{i}.JPEG", size=(260, 256))
    samples, _ = V.image_folder(tmp_path)
    for proto in ("center", "ten_crop_resnet"):
        res = V.evaluate(_ConstantClass(1), samples, proto, torch.device("cpu"), batch_size=3)
        assert res["n"] == 4 and res["top1_accuracy"] == pytest.approx(25.0)
        assert res["top5_accuracy"] == pytest.approx(100.0)  # 4 classes: top-5 holds every class
    m = V.accuracy_metrics(res)
    assert m["top1_error"].value == pytest.approx(75.0)
    with pytest.raises(UsageError, match="unknown protocol"):
        V.evaluate(_ConstantClass(1), samples, "five_crop", torch.device("cpu"))


# ------------------------------------------------------------------------------------- state dicts
def test_state_dict_file_round_trip_and_errors(tmp_path):
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    torch.save({"state_dict": a.state_dict()}, tmp_path / "w.pth")
    V.load_state_dict_file(b, tmp_path / "w.pth")
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    torch.save({"weight": a.weight.detach()}, tmp_path / "partial.pth")
    with pytest.raises(UsageError, match="missing \\['bias'\\]"):
        V.load_state_dict_file(b, tmp_path / "partial.pth")
    torch.save({"weight": torch.zeros(5, 3), "bias": torch.zeros(5)}, tmp_path / "shape.pth")
    with pytest.raises(UsageError, match="shape of weight"):
        V.load_state_dict_file(b, tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="not a loadable state dict"):
        V.load_state_dict_file(b, tmp_path / "junk.pth")
    with pytest.raises(UsageError, match="no such path"):
        V.load_state_dict_file(b, tmp_path / "absent.pth")


# ---------------------------------------------------------------------------------------- CIFAR-10
def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    # Bytes keys and protocol 2, like the original Python 2 cPickle files.
    d = {b"batch_label": b"fake", b"labels": [int(v) for v in rng.integers(0, 10, n)],
         b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
    path.write_bytes(pickle.dumps(d, protocol=2))
    return d


def test_cifar10_batches_load(tmp_path):
    b1 = _cifar_batch(tmp_path / "data_batch_1", 4, 0)
    _cifar_batch(tmp_path / "data_batch_2", 3, 1)
    t = _cifar_batch(tmp_path / "test_batch", 2, 2)
    xtr, ytr, xte, yte = V.load_cifar10(tmp_path)
    assert xtr.shape == (7, 3, 32, 32) and xtr.dtype == torch.uint8 and xte.shape == (2, 3, 32, 32)
    assert ytr[:4].tolist() == b1[b"labels"] and yte.tolist() == t[b"labels"]
    # The row layout is 1024 red, then green, then blue values, row-major: pixel (0, 0, 1) is byte 1.
    assert xtr[0, 1, 0, 1].item() == b1[b"data"][0, 1024 + 1]


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_code_and_bad_shapes(tmp_path):
    (tmp_path / "evil").write_bytes(pickle.dumps({"data": _Evil(), "labels": []}, protocol=2))
    with pytest.raises(UsageError, match="os.system|posix.system|not allowed"):
        V.load_cifar_batch(tmp_path / "evil")
    (tmp_path / "short").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(UsageError, match="N x 3072"):
        V.load_cifar_batch(tmp_path / "short")
    with pytest.raises(UsageError, match="data_batch_1..5 and test_batch"):
        V.load_cifar10(tmp_path)


# ------------------------------------------------------------------------------------------- MNIST
def _idx(a: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def test_mnist_idx_files_load_plain_and_gzipped(tmp_path):
    rng = np.random.default_rng(0)
    imgs, labs = rng.integers(0, 256, (5, 28, 28)), rng.integers(0, 10, 5)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(imgs))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labs)))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(imgs[:2]))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(labs[:2]))
    xtr, ytr, xte, yte = V.load_mnist(tmp_path)
    assert xtr.shape == (5, 28, 28) and torch.equal(xtr, torch.from_numpy(imgs.astype(np.uint8)))
    assert ytr.tolist() == labs.tolist() and yte.shape == (2,)


def test_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(UsageError, match="bad magic"):
        V.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(_idx(np.zeros((3, 2)))[:-1])
    with pytest.raises(UsageError, match="header says 6"):
        V.read_idx(tmp_path / "short")
    with pytest.raises(UsageError, match="missing train-images"):
        V.load_mnist(tmp_path)


def test_quality_seeds():
    assert _ctx(seed=5).quality_seeds(3) == (5, 6, 7)
    assert _ctx(seeds=(1, 9)).quality_seeds(3) == (1, 9)
    assert _ctx(options={"n_seeds": "2"}).quality_seeds(3) == (0, 1)
