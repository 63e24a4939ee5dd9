"""Small image-classification data sets held in memory for proxy training.

Images are kept as uint8 N x C x H x W tensors; `proxy_images` turns the part a trial uses into
normalized float tensors at the proxy resolution once, channels last, to batch from. Validation is always a seeded
subset carved out of the training files, disjoint from the training part, so a search never
looks at a data set's test split. The official test split, where a data set has one, is kept
apart (`test_x`, `test_y`) for references that no proxy sees.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FatnasError, shown

DATASETS = ("fashion-mnist", "fashion-mnist-mosaic", "fashion-mnist-few", "cifar10", "imagefolder")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
FASHION_MNIST_TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
EVAL_SPLITS = ("val", "test")
VAL_POOL = 2000  # training images set aside for validation (a proxy measures on the first val_images of them)
IMAGEFOLDER_SIZE = 64
_IDX_UINT8 = 0x08
_STATS_IMAGES = 10_000  # normalization statistics come from the first training images
_STATS_CHUNK = 2048


class DataError(FatnasError):
    """A missing or invalid data set; the one-line message says what is missing and how to get it."""


@dataclass
class DataSplit:
    """A data set split into disjoint training and validation parts (uint8 images, int64 labels)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    in_chans: int
    name: str
    image_size: tuple[int, int]
    mean: tuple[float, ...]  # per channel, of the training part, in [0, 1] units
    std: tuple[float, ...]
    train_indices: torch.Tensor  # positions of the parts in the source training file
    val_indices: torch.Tensor
    test_x: torch.Tensor | None = None  # the official test split, if the data set has one
    test_y: torch.Tensor | None = None

    def eval_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels to evaluate on: 'val' (carved from training) or 'test' (the official split)."""
        if split == "val":
            return self.val_x, self.val_y
        if split == "test" and self.test_x is not None:
            return self.test_x, self.test_y
        if split == "test":
            raise DataError(f"data set {self.name!r} has no test split here; evaluate on 'val' or give a "
                            f"data set with one (Fashion-MNIST's t10k files, CIFAR-10's test_batch)")
        raise DataError(f"unknown split {split!r}; accepted: {', '.join(EVAL_SPLITS)}")

    def normalization(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std as 1 x C x 1 x 1 float tensors on `device`, for `prepare_images`."""
        shape = (1, self.in_chans, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(shape)
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(shape)
        return mean, std


def load_dataset(name: str = "fashion-mnist", data_dir: str | Path | None = None, *,
                 val_images: int | None = None, seed: int = 0, classes: tuple[int, ...] = ()) -> DataSplit:
    """Load a data set and split its training files into training and a seeded validation subset of `val_images`
    (None: VAL_POOL, or half the images of a data set of no more, a small ImageFolder).

    `classes` keeps only those classes, relabelled 0, 1, ... (empty: all). A generated data set
    (`fatnas.estimate.tasks.GENERATED`) is made from its source's split, then its classes are kept.
    """
    from .tasks import GENERATED  # generated data sets are made from the ones read here

    if name in GENERATED:
        source, make = GENERATED[name]
        return select_classes(make(load_dataset(source, data_dir, val_images=val_images, seed=seed)), classes)
    test: tuple[torch.Tensor, torch.Tensor] | None = None
    if name == "fashion-mnist":
        folder = str(Path(data_dir or FASHION_MNIST_DIR).resolve())
        images, labels = _fashion_mnist(folder)
        if _has_idx(Path(folder), FASHION_MNIST_TEST_FILES):
            test = _fashion_mnist(folder, FASHION_MNIST_TEST_FILES)
    elif name == "cifar10":
        images, labels = _cifar10(_required_dir(name, data_dir))
        test = _cifar10(_required_dir(name, data_dir), train=False)
    elif name == "imagefolder":
        images, labels = _imagefolder(_required_dir(name, data_dir))
    else:
        raise DataError(f"unknown data set {shown(name)}; accepted names: {', '.join(DATASETS)}")
    if val_images is None:
        val_images = VAL_POOL if VAL_POOL < len(images) else len(images) // 2
    split = _split(name, images, labels, val_images, seed)
    if test is not None:
        split.test_x, split.test_y = test
    return select_classes(split, classes)


# The task a command runs on where --classes is not given. Fashion-MNIST's upper-body classes (t-shirt, pullover,
# coat, shirt): on all 10 classes every network reaches about the same accuracy and a reference cannot rank
# (seed-to-seed tau 0.23); on these four it repeats (0.45, bench/results/fidelity_study_upper).
DEFAULT_CLASSES = {"fashion-mnist": (0, 2, 4, 6)}


def default_classes(dataset: str) -> tuple[int, ...]:
    """The classes a new run of `dataset` uses unless told (empty: all)."""
    return DEFAULT_CLASSES.get(dataset, ())


def parse_classes(text: str) -> tuple[int, ...]:
    """'0,2,4,6' -> (0, 2, 4, 6): at least two distinct class numbers; 'all' -> () (every class)."""
    if text.strip().lower() == "all":
        return ()
    try:
        classes = tuple(int(item) for item in text.split(","))
    except ValueError:
        raise DataError(f"--classes {text!r}: expected class numbers such as 0,2,4,6, or all") from None
    check_classes(classes)
    return classes


def check_classes(classes: tuple[int, ...]) -> None:
    """Refuse a class selection of fewer than two, repeated or negative class numbers (empty means all)."""
    if classes and (len(classes) < 2 or len(set(classes)) != len(classes) or min(classes) < 0):
        raise DataError(f"classes {list(classes)}: give at least two distinct class numbers >= 0")


def select_classes(data: DataSplit, classes: tuple[int, ...]) -> DataSplit:
    """`data` with only `classes`, relabelled 0, 1, ... in the order given, in every split (normalization kept)."""
    if not classes:
        return data
    check_classes(classes)
    if max(classes) >= data.num_classes:
        raise DataError(f"classes {list(classes)}: {data.name} has classes 0 to {data.num_classes - 1}")
    lookup = torch.full((data.num_classes,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    train, val = lookup[data.train_y] >= 0, lookup[data.val_y] >= 0
    changes = dict(train_x=data.train_x[train], train_y=lookup[data.train_y[train]], val_x=data.val_x[val],
                   val_y=lookup[data.val_y[val]], train_indices=data.train_indices[train],
                   val_indices=data.val_indices[val], num_classes=len(classes))
    if data.test_x is not None:
        test = lookup[data.test_y] >= 0
        changes.update(test_x=data.test_x[test], test_y=lookup[data.test_y[test]])
    return dataclasses.replace(data, **changes)


def _required_dir(name: str, data_dir: str | Path | None) -> Path:
    if data_dir is None:
        raise DataError(f"data set {name!r} needs a folder: pass --data-dir (data_dir=...)")
    return Path(data_dir)


@functools.lru_cache(maxsize=4)
def _fashion_mnist(folder: str, files: tuple[str, str] = FASHION_MNIST_FILES) -> tuple[torch.Tensor, torch.Tensor]:
    """A Fashion-MNIST split (training by default) as (N x 1 x 28 x 28 uint8, N int64); cached per process."""
    paths = [_find_idx(Path(folder), stem) for stem in files]
    images, labels = (_read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"Fashion-MNIST files under {folder} disagree: images {images.shape}, "
                        f"labels {labels.shape}")
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _idx_file(folder: Path, stem: str) -> Path | None:
    """The idx file `stem`, gzipped or not, under `folder`; None if neither exists."""
    return next((c for c in (folder / f"{stem}.gz", folder / stem) if c.is_file()), None)


def _has_idx(folder: Path, stems: tuple[str, ...]) -> bool:
    return all(_idx_file(folder, stem) is not None for stem in stems)


def _find_idx(folder: Path, stem: str) -> Path:
    found = _idx_file(folder, stem)
    if found is not None:
        return found
    raise DataError(
        f"Fashion-MNIST not found under {folder} (no {stem}[.gz]); install it with "
        f"`apt-get install dataset-fashion-mnist` or pass --data-dir with the idx files"
    )


def _read_idx(path: Path) -> np.ndarray:
    """Parse an idx file (gzipped or not) of unsigned bytes into a writable numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}; re-install the data set or pass --data-dir") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UINT8:
        raise DataError(f"{path} is not an idx file of unsigned bytes; re-install the data set")
    ndim, offset = raw[3], 4 + 4 * raw[3]
    if len(raw) < offset:
        raise DataError(f"{path} is truncated inside its header; re-install the data set")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - offset != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy()


def _cifar10(folder: Path, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(root=str(folder), train=train, download=False)
    except RuntimeError as exc:
        raise DataError(
            f"CIFAR-10 not found under {folder}; download the python version "
            f"(cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html) and "
            f"extract it so that {folder / 'cifar-10-batches-py'} exists, or pass --data-dir"
        ) from exc
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def _imagefolder(folder: Path, size: int = IMAGEFOLDER_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of an ImageFolder tree as RGB, resized once to size x size."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    hint = "expected DATA_DIR/<class>/<image files>; pass --data-dir"
    if not folder.is_dir():
        raise DataError(f"image folder {folder} not found; {hint}")
    try:
        ds = ImageFolder(str(folder), transform=transforms.Resize((size, size)))
    except (FileNotFoundError, RuntimeError) as exc:
        raise DataError(f"no images found under {folder}; {hint}") from exc
    if len(ds) < 2:
        raise DataError(f"image folder {folder} holds {len(ds)} image(s), need at least 2; {hint}")
    resize = transforms.Resize((size, size))
    arrays = [_image_pixels(path, resize) for path, _ in ds.samples]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(ds.targets, dtype=torch.int64)


def _image_pixels(path: str, resize: Any) -> np.ndarray:
    """One image as RGB uint8 pixels, resized; a corrupt file or a decompression bomb (more pixels than PIL's
    MAX_IMAGE_PIXELS) is one DataError naming the file, before its pixels are decoded."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return np.asarray(resize(img.convert("RGB")), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"image {path} cannot be read ({type(exc).__name__}: {shown(str(exc), 120)}); "
                        "remove or replace it") from None


def _split(name: str, images: torch.Tensor, labels: torch.Tensor, val_images: int, seed: int) -> DataSplit:
    """Carve a seeded validation subset out of the training images, disjoint from the rest."""
    n = len(images)
    if not 1 <= val_images < n:
        raise DataError(f"val_images={val_images} must be in [1, {n - 1}] for {name} ({n} training images)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_images].sort().values, order[val_images:].sort().values
    train_x = images.index_select(0, train_idx)
    mean, std = _channel_stats(train_x[:_STATS_IMAGES])
    return DataSplit(
        train_x=train_x, train_y=labels[train_idx], val_x=images.index_select(0, val_idx),
        val_y=labels[val_idx],
        num_classes=int(labels.max()) + 1, in_chans=images.shape[1], name=name,
        image_size=(images.shape[2], images.shape[3]), mean=mean, std=std,
        train_indices=train_idx, val_indices=val_idx,
    )


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units, accumulated in float64 chunks."""
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), _STATS_CHUNK):
        chunk = images[start:start + _STATS_CHUNK].to(torch.float64) / 255.0
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def prepare_images(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, res: int | None = None) -> torch.Tensor:
    """uint8 N x C x H x W -> normalized float, bilinearly resized to res x res only when it differs."""
    x = x.float().div_(255.0).sub_(mean).div_(std)
    if res is not None and tuple(x.shape[-2:]) != (res, res):
        x = F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    return x


@dataclass
class ProxyImages:
    """Images normalized and resized once to the proxy resolution, held N x H x W x C (channels last).

    `batch` hands out N x C x H x W views with channels-last strides, no copy of the layout;
    `augmented_batch` takes random crops (zero padding in pixel units) and horizontal flips.
    """

    pixels: torch.Tensor  # float N x H x W x C
    labels: torch.Tensor
    fill: torch.Tensor  # per channel: a black pixel after normalization (the padding of crops)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, idx: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (channels-last strides) and labels at `idx`."""
        return self.pixels[idx].permute(0, 3, 1, 2), self.labels[idx]

    def augmented_batch(self, idx: torch.Tensor, pad: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Random res x res crops of the images padded by `pad`, half of them flipped left-right."""
        _, h, w, _ = self.pixels.shape
        count = len(idx)
        dy = torch.randint(-pad, pad + 1, (count, 1), generator=gen)
        dx = torch.randint(-pad, pad + 1, (count, 1), generator=gen)
        flip = torch.rand(count, 1, generator=gen) < 0.5
        cols = torch.arange(w).expand(count, w)
        rows = (torch.arange(h) + dy).to(self.pixels.device)
        cols = (torch.where(flip, w - 1 - cols, cols) + dx).to(self.pixels.device)
        inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
        idx = idx.to(self.pixels.device)
        x = self.pixels[idx[:, None, None], rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
        x = torch.where(inside[..., None], x, self.fill)
        return x.permute(0, 3, 1, 2), self.labels[idx]


def proxy_images(images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 res: int, device: str | torch.device = "cpu") -> ProxyImages:
    """uint8 N x C x H x W -> ProxyImages at res x res on `device`, prepared once for a whole trial."""
    pixels = prepare_images(images.to(device), mean, std, res).permute(0, 2, 3, 1).contiguous()
    fill = ((0.0 - mean) / std).reshape(-1)
    return ProxyImages(pixels=pixels, labels=labels.to(device), fill=fill)


def settings_data(settings: Any) -> DataSplit:
    """The data set that search, study or scaling settings name: their dataset, data_dir, seed and classes."""
    wanted = getattr(getattr(settings, "proxy", None), "val_images", 0)  # a proxy measuring on more: a bigger pool
    return load_dataset(settings.dataset, settings.data_dir, seed=settings.seed,
                        classes=getattr(settings, "classes", ()), val_images=wanted if wanted > VAL_POOL else None)


__all__ = ["DATASETS", "EVAL_SPLITS", "DataError", "DataSplit", "ProxyImages", "check_classes", "load_dataset",
           "parse_classes", "prepare_images", "proxy_images", "select_classes", "settings_data"]
