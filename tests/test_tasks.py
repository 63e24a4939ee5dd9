"""Named tasks: generated mosaics label what they hold, each split from its own images; few-per-class; names."""
from __future__ import annotations

import pytest
import torch

from fatnas import cli
from fatnas.estimate.data import DataError, DataSplit, load_dataset
from fatnas.estimate.tasks import TASKS, duplicate_mosaics, few_per_class, get_task, load_task, mosaic_task

from .conftest import needs_fashion_mnist

CLASSES = 10
SPLIT_MARK = {"train": 0, "val": 100, "test": 200}  # pixel value = mark + class: a tile tells its split and class


def marked_images(split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    images = (SPLIT_MARK[split] + labels).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    return images, labels


def marked_split() -> DataSplit:
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = (marked_images(s, n) for s, n in
                                                            (("train", 6), ("val", 3), ("test", 4)))
    return DataSplit(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, num_classes=CLASSES, in_chans=1,
                     name="marked", image_size=(4, 4), mean=(0.5,), std=(0.25,),
                     train_indices=torch.arange(len(train_x)), val_indices=torch.arange(len(val_x)),
                     test_x=test_x, test_y=test_y)


def tile_values(mosaics: torch.Tensor) -> torch.Tensor:
    """The pixel value of each of the 2 x 2 tiles (4 x 4 px each) of every mosaic: N x 4."""
    return mosaics[:, 0, ::4, ::4].reshape(len(mosaics), 4).long()


def test_a_mosaic_holds_its_label_twice_and_two_other_classes_once():
    images, labels = marked_images("train", 5)
    mosaics, targets = duplicate_mosaics(images, labels, 300, CLASSES, torch.Generator().manual_seed(1))
    assert mosaics.shape == (300, 1, 8, 8)
    for tiles, target in zip(tile_values(mosaics).tolist(), targets.tolist()):
        counts = sorted(tiles.count(c) for c in set(tiles))
        assert counts == [1, 1, 2] and tiles.count(target) == 2
    assert set(targets.tolist()) == set(range(CLASSES))


def test_each_part_of_the_mosaic_task_is_made_from_its_own_images_only():
    task = mosaic_task(marked_split())
    for split, x in (("train", task.train_x), ("val", task.val_x), ("test", task.test_x)):
        values = tile_values(x)
        assert ((values >= SPLIT_MARK[split]) & (values < SPLIT_MARK[split] + CLASSES)).all(), split
    assert task.image_size == (8, 8) and len(task.test_x) == 40


def test_the_mosaic_task_is_the_same_whoever_makes_it():
    first, second = mosaic_task(marked_split()), mosaic_task(marked_split())
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)


def test_few_per_class_keeps_that_many_training_images_of_each_class_only():
    data = few_per_class(marked_split(), per_class=2)
    assert torch.bincount(data.train_y).tolist() == [2] * CLASSES
    assert len(data.val_x) == 30 and len(data.test_x) == 40


def test_an_unknown_task_names_the_accepted_ones():
    with pytest.raises(DataError, match="unknown task 'cifar-moon'; accepted: " + ", ".join(TASKS)):
        get_task("cifar-moon")


@needs_fashion_mnist
def test_the_upper_body_task_keeps_four_classes_and_the_mosaic_task_doubles_the_size():
    upper = load_task("fmnist-upper", val_images=500)
    assert upper.num_classes == 4 and get_task("fmnist-upper").classes == (0, 2, 4, 6)
    mosaic = load_task("fmnist-mosaic", val_images=500)
    assert mosaic.train_x.shape[1:] == (1, 56, 56) and len(mosaic.test_x) == 10_000


@needs_fashion_mnist
def test_a_generated_data_set_is_a_data_set_like_any_other_and_keeps_classes():
    few = load_dataset("fashion-mnist-few", val_images=500, classes=(0, 1))
    assert few.name == "fashion-mnist-few" and torch.bincount(few.train_y).tolist() == [256, 256]


def test_task_is_refused_beside_dataset_or_classes_and_unknown_names_are_listed(capsys, tmp_path):
    assert cli.main(["fidelity", "--task", "fmnist10", "--classes", "1,2"]) == 2
    assert cli.main(["search", "--task", "fmnist10", "--dataset", "cifar10"]) == 2
    assert cli.main(["fidelity", "--task", "moon"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "give it alone" in lines[0] and "accepted: fmnist-upper, fmnist10" in lines[2]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
