"""Paper-scale vision data given by the user (`--data NAME=PATH`) and the papers' evaluation protocols.

Nothing is downloaded. Loaders read the standard on-disk layouts:
- ImageNet: a folder of class sub-folders (`val/n01440764/*.JPEG`, torchvision's ImageFolder order:
  sorted folder names), or the ILSVRC validation layout, a flat folder of JPEGs plus a labels file.
- CIFAR-10: the python pickle batches (`data_batch_1..5`, `test_batch`), read by an unpickler that
  only admits numpy's array reconstruction, never arbitrary callables.
- MNIST: IDX files (optionally gzipped).
Images are decoded with PIL. Protocols: single centre crop (torchvision), AlexNet's 10 patches (Sec. 6:
four corners and centre of the 256x256 image, and their reflections), ResNet's 10-crop (Sec. 3.4).
Pretrained weights: torchvision-format state dict files, loaded with `weights_only=True`.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from milestones.harness.context import CaseContext, SkipCase
from milestones.harness.errors import UsageError
from milestones.harness.suite_api import Metrics

IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's normalisation, which its weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt", "labels.txt", "ILSVRC2012_validation_ground_truth.txt")


# ------------------------------------------------------------------------------------------ paths
def data_path(ctx: CaseContext, name: str, *, kind: str = "dir", needed_for: str = "this case") -> Path:
    """The path given as `--data NAME=PATH`: SkipCase when not given, UsageError when unusable."""
    raw = ctx.data.get(name)
    if not raw:
        raise SkipCase(f"needs --data {name}=PATH ({needed_for})")
    return checked_path(raw, name, kind)


def checked_path(raw: str | Path, name: str, kind: str = "dir") -> Path:
    p = Path(raw).expanduser()
    if not p.exists():
        raise UsageError(f"--data {name}={raw}: no such path")
    if kind == "dir" and not p.is_dir():
        raise UsageError(f"--data {name}={raw}: expected a folder")
    if kind == "file" and not p.is_file():
        raise UsageError(f"--data {name}={raw}: expected a file")
    return p


# -------------------------------------------------------------------------------------- ImageNet
Samples = list[tuple[Path, int]]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def image_folder(root: str | Path) -> tuple[Samples, list[str]]:
    """A folder of class sub-folders -> ([(image, class index)], classes); classes in sorted order."""
    root = checked_path(root, "imagenet")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise UsageError(f"{root}: no class sub-folders (expected e.g. {root}/n01440764/*.JPEG)")
    samples = [(p, i) for i, c in enumerate(classes) for p in _images_in(root / c)]
    if not samples:
        raise UsageError(f"{root}: the class sub-folders hold no images ({', '.join(IMAGE_EXTS)})")
    return samples, classes


def _devkit_ids_to_wnids(meta: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WNID from the devkit's meta.mat (leaf synsets only, as torchvision reads it)."""
    from scipy.io import loadmat

    try:
        syn = loadmat(str(meta), squeeze_me=True)["synsets"]
        return {int(i): str(w) for i, w, c in zip(syn["ILSVRC2012_ID"], syn["WNID"], syn["num_children"]) if int(c) == 0}
    except (KeyError, ValueError, TypeError, OSError) as e:
        raise UsageError(f"{meta}: not an ILSVRC devkit meta.mat ({e})") from None


def read_val_labels(labels: Path, files: list[Path]) -> list[str | int]:
    """Labels of `files` (sorted) from one of the usual ILSVRC validation label files.

    Accepted: lines `FILENAME LABEL` (space, tab or comma; LABEL a WNID or a 0-based class index in
    sorted-WNID order); Kaggle's LOC_val_solution.csv (`ImageId,PredictionString`, the first word a
    WNID); one label per line in sorted file order (WNIDs; or the devkit's 1-based ILSVRC2012_IDs when
    the devkit's meta.mat lies beside the labels file).
    """
    try:
        lines = [ln.strip() for ln in labels.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{labels}: cannot read labels file ({e})") from None
    if lines and lines[0].lower().startswith("imageid,"):
        lines = lines[1:]
    if not lines:
        raise UsageError(f"{labels}: empty labels file")
    two_col = len(lines[0].replace(",", " ").split()) >= 2
    if not two_col:
        if len(lines) != len(files):
            raise UsageError(f"{labels}: {len(lines)} labels for {len(files)} images")
        if all(ln.isdigit() for ln in lines):
            meta = labels.parent / "meta.mat"
            if not meta.is_file():
                raise UsageError(f"{labels}: one-column integer labels are the devkit's ILSVRC2012_IDs, whose "
                                 f"class order needs the devkit's meta.mat beside it (or use 'FILENAME LABEL' lines)")
            ids = _devkit_ids_to_wnids(meta)
            try:
                return [ids[int(ln)] for ln in lines]
            except KeyError as e:
                raise UsageError(f"{labels}: ILSVRC2012_ID {e.args[0]} is not in {meta}") from None
        return list(lines)
    by_name: dict[str, str | int] = {}
    for n, ln in enumerate(lines, 1):
        parts = ln.replace(",", " ").split()
        if len(parts) < 2:
            raise UsageError(f"{labels}:{n}: expected 'FILENAME LABEL', got {ln!r}")
        lab: str | int = int(parts[1]) if parts[1].isdigit() else parts[1]
        by_name[parts[0]] = lab
        by_name.setdefault(Path(parts[0]).stem, lab)  # Kaggle's ImageId has no extension
    out: list[str | int] = []
    for f in files:
        lab = by_name.get(f.name, by_name.get(f.stem))
        if lab is None:
            raise UsageError(f"{labels}: no label for image {f.name}")
        out.append(lab)
    return out


def imagenet_val(path: str | Path, labels: str | Path | None = None,
                 classes: Sequence[str] | None = None) -> tuple[Samples, list[str]]:
    """The validation images under `path`: class sub-folders, or a flat folder with a labels file.

    `path` may also be an ImageNet root holding `val/` (and `train/`, whose folder names then fix the
    class order). `classes` (sorted WNIDs) fixes the order otherwise; by default the sorted labels.
    """
    root = checked_path(path, "imagenet")
    if (root / "val").is_dir():
        if classes is None and (root / "train").is_dir():
            classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
        root = root / "val"
    if any(d.is_dir() for d in root.iterdir()):
        samples, found = image_folder(root)
        if classes is not None:
            index = {c: i for i, c in enumerate(classes)}
            missing = [c for c in found if c not in index]
            if missing:
                raise UsageError(f"{root}: class folder {missing[0]!r} is not a known class")
            samples = [(p, index[found[i]]) for p, i in samples]
            found = list(classes)
        return samples, found
    files = _images_in(root)
    if not files:
        raise UsageError(f"{root}: no images and no class sub-folders")
    if labels is None:
        cand = [d / n for n in LABEL_FILES for d in (root, root.parent) if (d / n).is_file()]
        if not cand:
            raise UsageError(f"{root}: flat image folder without a labels file (give --data imagenet-labels=FILE)")
        labels = cand[0]
    labs = read_val_labels(checked_path(labels, "imagenet-labels", "file"), files)
    if classes is None:
        wn = sorted({x for x in labs if isinstance(x, str)})
        classes = wn if wn else [str(i) for i in range(max(int(x) for x in labs) + 1)]
    index = {c: i for i, c in enumerate(classes)}
    samples: Samples = []
    for f, lab in zip(files, labs):
        if isinstance(lab, int):
            if not 0 <= lab < len(classes):
                raise UsageError(f"{labels}: class index {lab} out of range for {len(classes)} classes")
            samples.append((f, lab))
        elif lab in index:
            samples.append((f, index[lab]))
        else:
            raise UsageError(f"{labels}: label {lab!r} of {f.name} is not a known class")
    return samples, list(classes)


# ----------------------------------------------------------------------------- decoding, transforms
def load_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise UsageError(f"{path}: cannot decode image ({e})") from None


def resize_shorter(img, size: int):
    """Scale so the shorter side is `size` (bilinear, as torchvision's Resize(256))."""
    from PIL import Image

    w, h = img.size
    if w <= h:
        nw, nh = size, max(1, round(h * size / w))
    else:
        nw, nh = max(1, round(w * size / h)), size
    return img.resize((nw, nh), Image.BILINEAR)


def to_tensor(img, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """PIL RGB -> normalised float CHW tensor."""
    a = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
    return (a - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def center_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}")
    top, left = (h - size) // 2, (w - size) // 2
    return t[..., top:top + size, left:left + size]


def ten_crop(t: torch.Tensor, size: int) -> torch.Tensor:
    """(C,H,W) -> (10,C,size,size): top-left, top-right, bottom-left, bottom-right, centre, then the
    same five of the horizontally reflected image."""
    h, w = t.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w}")
    five = [t[..., :size, :size], t[..., :size, w - size:], t[..., h - size:, :size], t[..., h - size:, w - size:],
            center_crop(t, size)]
    five = torch.stack(five)
    return torch.cat([five, five.flip(-1)])


def view_center(img, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """torchvision's evaluation: shorter side 256, one centre 224x224 crop -> (1,C,224,224)."""
    return center_crop(to_tensor(resize_shorter(img, resize)), crop).unsqueeze(0)


def view_ten_patches_alexnet(img, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """AlexNet Sec. 2 and 6: rescale the shorter side to 256, take the central 256x256, then the four
    corner and centre 224x224 patches and their reflections (10 views)."""
    return ten_crop(center_crop(to_tensor(resize_shorter(img, resize)), resize), crop)


def view_ten_crop_resnet(img, resize: int = 256, crop: int = 224) -> torch.Tensor:
    """ResNet Sec. 3.4, "standard 10-crop testing": the 10 crops of the image with shorter side 256."""
    return ten_crop(to_tensor(resize_shorter(img, resize)), crop)


PROTOCOLS: dict[str, Callable[[Any], torch.Tensor]] = {
    "center": view_center, "ten_patches_alexnet": view_ten_patches_alexnet, "ten_crop_resnet": view_ten_crop_resnet}


class ViewDataset(torch.utils.data.Dataset):
    """(views, label) per image: views is (V,C,H,W) from a protocol's view function."""

    def __init__(self, samples: Samples, view: Callable[[Any], torch.Tensor]) -> None:
        self.samples, self.view = samples, view

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        p, y = self.samples[i]
        return self.view(load_image(p)), y


# ------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: torch.nn.Module, samples: Samples, protocol: str, device: torch.device, *,
             batch_size: int = 32, num_workers: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Top-1/top-5 correctness per image; the softmax is averaged over the protocol's views (AlexNet
    Sec. 6 averages "the predictions made by the network's softmax layer on the ten patches")."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    loader = torch.utils.data.DataLoader(ViewDataset(samples, PROTOCOLS[protocol]), batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=device.type == "cuda")
    model.eval()
    top1: list[float] = []
    top5: list[float] = []
    for views, y in loader:
        b, v = views.shape[:2]
        logits = model(views.flatten(0, 1).to(device, dtype, non_blocking=True)).float()
        probs = F.softmax(logits, dim=1).view(b, v, -1).mean(1).cpu()
        k = min(5, probs.shape[1])
        topk = probs.topk(k, dim=1).indices
        top1 += (topk[:, 0] == y).float().tolist()
        top5 += (topk == y[:, None]).any(1).float().tolist()
    n = len(top1)
    return {"n": n, "top1_correct": top1, "top5_correct": top5,
            "top1_accuracy": 100.0 * sum(top1) / n, "top5_accuracy": 100.0 * sum(top5) / n}


def accuracy_metrics(res: dict[str, Any]) -> Metrics:
    """Percent figures as the baselines state them (accuracy for torchvision, error for the papers)."""
    n = res["n"]
    out = Metrics()
    for k in ("top1", "top5"):
        acc = res[f"{k}_accuracy"]
        out.single(f"{k}_accuracy", "%", acc, note=f"{n} images")
        out.single(f"{k}_error", "%", 100.0 - acc, note=f"{n} images")
    return out


def load_state_dict_file(model: torch.nn.Module, path: str | Path) -> dict[str, Any]:
    """Load a torchvision-format state dict (e.g. alexnet-owt-7be5be79.pth) into `model`, strictly.

    `weights_only=True`: the file can hold tensors and plain containers only, no code.
    """
    p = checked_path(path, "weights", "file")
    try:
        sd = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises several types for a corrupt or non-tensor file
        raise UsageError(f"{p}: not a loadable state dict ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    for wrap in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(wrap), dict):
            sd = sd[wrap]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UsageError(f"{p}: expected a mapping of parameter names to tensors")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise UsageError(f"{p}: keys do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    bad = [k for k in own if own[k].shape != sd[k].shape]
    if bad:
        raise UsageError(f"{p}: shape of {bad[0]} is {tuple(sd[bad[0]].shape)}, the model's is {tuple(own[bad[0]].shape)}")
    model.load_state_dict(sd, strict=True)
    return {"file": str(p), "tensors": len(sd)}


def pretrained_imagenet_quality(ctx: CaseContext, model: torch.nn.Module, weights_key: str,
                                protocol: str) -> tuple[Metrics, dict[str, Any]]:
    """Evaluate torchvision-format weights on the user's ImageNet validation set under `protocol`.

    `--data imagenet=PATH` (required), `--data imagenet-labels=FILE` (flat layouts),
    `--data WEIGHTS_KEY=FILE` (or `--data weights=FILE`); `--option eval_batch=N`, `--option workers=N`,
    `--option limit=N` (first N images, for a quick look; recorded in info).
    """
    root = data_path(ctx, "imagenet", needed_for="the ImageNet validation images")
    wkey = weights_key if ctx.data.get(weights_key) else "weights"
    wpath = data_path(ctx, wkey, kind="file", needed_for="a torchvision-format state dict")
    labels = ctx.data.get("imagenet-labels")
    samples, classes = imagenet_val(root, labels)
    limit = int(ctx.options.get("limit", 0))
    if limit:
        samples = samples[:limit]
    loaded = load_state_dict_file(model, wpath)
    model.to(ctx.torch_device, ctx.torch_dtype)
    res = evaluate(model, samples, protocol, ctx.torch_device, batch_size=int(ctx.options.get("eval_batch", 32)),
                   num_workers=int(ctx.options.get("workers", 0)), dtype=ctx.torch_dtype)
    info = {"protocol": protocol, "images": res["n"], "classes": len(classes), "weights": loaded,
            "imagenet": str(root), "limit": limit or None}
    ctx.seed_done(ctx.seed, {"top1_accuracy": res["top1_accuracy"], "top5_accuracy": res["top5_accuracy"]})
    return accuracy_metrics(res), info


# ----------------------------------------------------------------------------------------- CIFAR
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches hold dicts, lists, bytes and numpy arrays: admit numpy's reconstruction only."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (uint8 N,3,32,32, int64 N)."""
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError) as e:
        raise UsageError(f"{path}: not a CIFAR-10 python batch ({e})") from None
    if not isinstance(d, dict):
        raise UsageError(f"{path}: not a CIFAR-10 python batch (not a dict)")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise UsageError(f"{path}: a CIFAR-10 batch needs 'data' and 'labels'")
    x, y = np.asarray(d["data"]), np.asarray(d["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise UsageError(f"{path}: data must be N x 3072 with N labels, got {x.shape} and {y.shape}")
    return x.astype(np.uint8).reshape(-1, 3, 32, 32), y


def load_cifar10(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`cifar-10-batches-py` -> (x_train uint8 N,3,32,32, y_train, x_test, y_test)."""
    root = checked_path(root, "cifar10")
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train = sorted(root.glob("data_batch_*"))
    if not train or not (root / "test_batch").is_file():
        raise UsageError(f"{root}: expected data_batch_1..5 and test_batch (CIFAR-10 python version)")
    xs, ys = zip(*(load_cifar_batch(p) for p in train))
    xt, yt = load_cifar_batch(root / "test_batch")
    return (torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)),
            torch.from_numpy(xt), torch.from_numpy(yt))


# ----------------------------------------------------------------------------------------- MNIST
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (MNIST's format; `.gz` too): magic 0 0 TYPE NDIM, NDIM big-endian sizes, data."""
    p = checked_path(path, "mnist", "file")
    raw = p.read_bytes()
    if p.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise UsageError(f"{p}: bad gzip data ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UsageError(f"{p}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise UsageError(f"{p}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dt = np.dtype(_IDX_DTYPES[raw[2]])
    need = int(np.prod(dims)) * dt.itemsize
    body = raw[4 + 4 * ndim:]
    if len(body) != need:
        raise UsageError(f"{p}: IDX data holds {len(body)} bytes, the header says {need}")
    return np.frombuffer(body, dtype=dt).reshape(dims).astype(dt.newbyteorder("="))


def load_mnist(root: str | Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A folder with train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-* (gzipped or not)."""
    root = checked_path(root, "mnist")
    out = []
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        cand = [root / stem, root / f"{stem}.gz", root / stem.replace("-idx", ".idx")]
        found = next((c for c in cand if c.is_file()), None)
        if found is None:
            raise UsageError(f"{root}: missing {stem}[.gz]")
        out.append(read_idx(found))
    xtr, ytr, xte, yte = out
    if xtr.ndim != 3 or len(xtr) != len(ytr) or xte.ndim != 3 or len(xte) != len(yte):
        raise UsageError(f"{root}: image and label files do not match (shapes {xtr.shape}, {ytr.shape})")
    return (torch.from_numpy(xtr.copy()), torch.from_numpy(ytr.astype(np.int64)),
            torch.from_numpy(xte.copy()), torch.from_numpy(yte.astype(np.int64)))


# ------------------------------------------------------------------------------ proxy-scale helper
