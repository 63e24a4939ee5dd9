"""Named tasks (a data set and the classes kept), and the data sets generated from another one.

A task answers "what do the networks learn", so that a search, a supernet and a fidelity study can
share one: `--task NAME` is short for its `--dataset` and `--classes`, which runs record. A generated
data set is seeded by itself (`TASK_SEED`), not by a run's seed: every run sees the same images. Each
part of it (training, validation, test) is made only from the matching part of its source's split, so
the held-out test split shares no source image with what a search trains or validates on.

- `fmnist-upper`: Fashion-MNIST's upper-body classes (t-shirt, pullover, coat, shirt).
- `fmnist10`: all 10 Fashion-MNIST classes.
- `fmnist-few`: all 10 classes with only `FEW_PER_CLASS` training images each (data-limited).
- `fmnist-mosaic`: 2 x 2 mosaics (56 px) of four Fashion-MNIST items in which exactly one class appears
  twice; the label is that class. No single item decides it: a network must recognise all four and
  compare them, so global context (what FAT's attention adds) has to matter.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from .data import DataError, DataSplit, load_dataset

TASK_SEED = 20261206  # fixes every generated task, whatever the run's seed
FEW_PER_CLASS = 256
MOSAIC_GRID = 2  # items per side of a mosaic
EVAL_PARTS = ("train", "val", "test")  # each part of a generated task has its own generator seed


@dataclass(frozen=True)
class Task:
    """A named task: a data set (read or generated) and the classes kept (empty: all)."""

    name: str
    dataset: str
    classes: tuple[int, ...] = ()
    summary: str = ""


def few_per_class(data: DataSplit, per_class: int = FEW_PER_CLASS) -> DataSplit:
    """`data` with only the first `per_class` training images of each class (validation and test untouched)."""
    keep = torch.cat([torch.nonzero(data.train_y == c).flatten()[:per_class] for c in range(data.num_classes)])
    keep = keep.sort().values
    return dataclasses.replace(data, train_x=data.train_x[keep], train_y=data.train_y[keep],
                               train_indices=data.train_indices[keep], name=f"{data.name}-few")


def duplicate_mosaics(images: torch.Tensor, labels: torch.Tensor, count: int, num_classes: int,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` 2 x 2 mosaics of items from `images`: one class twice, two other classes once; label: the pair's class.

    The four items are placed in a random order; every item is drawn from its class's images.
    """
    pools = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    if any(len(pool) == 0 for pool in pools):
        raise DataError("a mosaic task needs images of every class in each split")
    pair = torch.randint(num_classes, (count,), generator=gen)
    # two other classes, distinct from the pair's and from each other: offsets 1..C-1 without repeats
    offsets = torch.rand(count, num_classes - 1, generator=gen).argsort(dim=1)[:, :2] + 1
    others = (pair[:, None] + offsets) % num_classes
    items = torch.cat([pair[:, None], pair[:, None], others], dim=1)  # count x 4 classes
    order = torch.rand(count, MOSAIC_GRID ** 2, generator=gen).argsort(dim=1)
    items = items.gather(1, order)
    picks = torch.empty_like(items)
    for c, pool in enumerate(pools):
        where = items == c
        picks[where] = pool[torch.randint(len(pool), (int(where.sum()),), generator=gen)]
    tiles = images[picks.flatten()].view(count, MOSAIC_GRID, MOSAIC_GRID, *images.shape[1:])
    n, rows, cols, chans, h, w = tiles.shape
    mosaics = tiles.permute(0, 3, 1, 4, 2, 5).reshape(n, chans, rows * h, cols * w).contiguous()
    return mosaics, pair


def mosaic_task(data: DataSplit) -> DataSplit:
    """Each split of `data` remade as duplicate-class mosaics, as many as it has images, from its own images only."""
    def remake(split: str, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(TASK_SEED + EVAL_PARTS.index(split))
        return duplicate_mosaics(images, labels, len(images), data.num_classes, gen)

    train_x, train_y = remake("train", data.train_x, data.train_y)
    val_x, val_y = remake("val", data.val_x, data.val_y)
    changes = dict(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                   image_size=tuple(train_x.shape[-2:]), name=f"{data.name}-mosaic",
                   train_indices=torch.arange(len(train_x)), val_indices=torch.arange(len(val_x)))
    if data.test_x is not None:
        changes["test_x"], changes["test_y"] = remake("test", data.test_x, data.test_y)
    return dataclasses.replace(data, **changes)


# generated data set -> (its source data set, what makes it from the source's split)
GENERATED: dict[str, tuple[str, Callable[[DataSplit], DataSplit]]] = {
    "fashion-mnist-mosaic": ("fashion-mnist", mosaic_task),
    "fashion-mnist-few": ("fashion-mnist", few_per_class),
}
TASKS = {task.name: task for task in (
    Task("fmnist-upper", "fashion-mnist", (0, 2, 4, 6), summary="Fashion-MNIST upper-body classes (4)"),
    Task("fmnist10", "fashion-mnist", summary="all 10 Fashion-MNIST classes"),
    Task("fmnist-few", "fashion-mnist-few", summary=f"all 10 classes, {FEW_PER_CLASS} training images per class"),
    Task("fmnist-mosaic", "fashion-mnist-mosaic",
         summary="2x2 Fashion-MNIST mosaics (56 px); label: the class that appears twice"),
)}


def get_task(name: str) -> Task:
    """The task called `name`; a DataError naming the accepted names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name[:40]!r}; accepted: {', '.join(TASKS)}") from None


def load_task(name: str, data_dir: str | None = None, *, val_images: int = 2000, seed: int = 0) -> DataSplit:
    """The data of task `name`: its data set's seeded split with its classes."""
    task = get_task(name)
    return load_dataset(task.dataset, data_dir, val_images=val_images, seed=seed, classes=task.classes)


__all__ = ["GENERATED", "TASKS", "TASK_SEED", "Task", "duplicate_mosaics", "few_per_class", "get_task", "load_task"]
