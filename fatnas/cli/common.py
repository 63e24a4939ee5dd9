"""What every command shares: the parser class with our one-line errors, the parent parsers of the shared
flags (one spelling, one check, one default each), and small text helpers."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import DEVICE_FORMS, FatnasError, check_device, check_threads

Handler = Callable[[argparse.Namespace], int]
# the defaults of the shared flags, stated once (a flag left out is None in args; `device`, `threads`, `dataset`
# read it): a new run uses these, and a resumed or joined run keeps what it recorded
DEFAULT_DEVICE = "cpu"
DEFAULT_THREADS = 1
DEFAULT_DATASET = "fashion-mnist"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with our one-line error and exit status 2, and no abbreviated flags (`--res` must not be taken
    for `--resume`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise FatnasError(f"{self.prog}: {message}")


def device_arg(text: str) -> str:
    """--device's type: the form is checked while parsing, availability where the command uses it."""
    try:
        return check_device(text, available=False)
    except FatnasError:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted forms: {DEVICE_FORMS}") from None


def finite_float(text: str) -> float:
    """The type of every number flag: a float, but not nan or inf (which no setting can mean)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def int_in(low: int, high: int) -> Callable[[str], int]:
    """The type of a whole-number flag that must lie in [low, high] (no count of threads or seed is unbounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from {low:,} to {high:,}")
        return value

    return parse


MAX_SEED = 2**32 - 1  # what numpy and Optuna's samplers take
MAX_BATCH = 4096
MAX_REPEATS = 1_000_000


@dataclass(frozen=True)
class Flags:
    """Parent parsers of the flags several commands share."""

    device_threads: argparse.ArgumentParser  # --device, --threads
    resumable_device_threads: argparse.ArgumentParser  # the same, for a command with --resume (it keeps the run's)
    data: argparse.ArgumentParser  # --dataset, --data-dir
    seed: argparse.ArgumentParser
    quiet: argparse.ArgumentParser
    classes: argparse.ArgumentParser

    @classmethod
    def make(cls) -> "Flags":
        def parent(*flags: tuple[str, dict[str, Any]]) -> argparse.ArgumentParser:
            p = ArgumentParser(add_help=False)
            for name, options in flags:
                p.add_argument(name, **options)
            return p

        def device_and_threads(kept: str) -> list[tuple[str, dict[str, Any]]]:
            return [("--device", dict(type=device_arg, default=None, metavar="DEVICE",
                                      help=f"cpu (default), cuda or cuda:N{kept}")),
                    ("--threads", dict(type=int, default=None, help=f"torch threads for timing and training "
                                                                         f"(default {DEFAULT_THREADS}{kept})"))]

        return cls(
            device_threads=parent(*device_and_threads("")),
            resumable_device_threads=parent(*device_and_threads("; a --resume without it keeps the run's")),
            data=parent(("--dataset", dict(default=None, help=f"{DEFAULT_DATASET} (default), fashion-mnist-mosaic or "
                                                   f"fashion-mnist-few (made from it), cifar10 or imagefolder")),
                        ("--data-dir", dict(default=None, help="folder of the data set (CIFAR-10 or ImageFolder)"))),
            seed=parent(("--seed", dict(type=int_in(0, MAX_SEED), default=0,
                                        help="seed of every random choice (default 0)"))),
            quiet=parent(("--quiet", dict(action="store_true", help="no progress output"))),
            classes=parent(("--classes", dict(default=None, metavar="C,C,...",
                                              help="train and validate on these classes only, or all; default for "
                                                   "fashion-mnist 0,2,4,6 (its upper-body classes: the task whose "
                                                   "reference ranks networks repeatably), for others all")),
                           ("--task", dict(default=None, metavar="NAME",
                                           help="a named task instead of --dataset and --classes: "
                                                + task_names()))),
        )


def device(args: argparse.Namespace) -> str:
    """The device of a new run: --device, else the default."""
    return args.device or DEFAULT_DEVICE


def task_names() -> str:
    from ..estimate.tasks import TASKS

    return "; ".join(f"{task.name} ({task.summary})" for task in TASKS.values())


def named_task(args: argparse.Namespace) -> Any:
    """The task --task names (None without it); refused beside --dataset or --classes, which it replaces."""
    from ..estimate.tasks import get_task

    if getattr(args, "task", None) is None:
        return None
    if args.dataset is not None or args.classes is not None:
        raise FatnasError("--task names a data set and its classes: give it alone, or --dataset/--classes instead")
    return get_task(args.task)


def task_classes(args: argparse.Namespace) -> tuple[int, ...]:
    """The classes of a new run: those of --task, else --classes (all: every class), else the data set's default."""
    from ..estimate.data import default_classes, parse_classes

    task = named_task(args)
    if task is not None:
        return task.classes
    if args.classes is None:
        return default_classes(dataset(args) or DEFAULT_DATASET)
    return parse_classes(args.classes)


def threads(args: argparse.Namespace) -> int:
    """The torch threads of a new run: --threads, else the default."""
    check_threads(args.threads)
    return DEFAULT_THREADS if args.threads is None else args.threads


def dataset(args: argparse.Namespace) -> str:
    """The data set of a new run: that of --task, else --dataset, else the default."""
    task = named_task(args)
    return task.dataset if task is not None else args.dataset or DEFAULT_DATASET


def given(**values: Any) -> dict[str, Any]:
    """The options that were given (not None), for settings classes to take with their own defaults."""
    return {name: value for name, value in values.items() if value is not None}


def table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_string(index=False)


def left_table(rows: list[dict[str, str]]) -> str:
    """Rows of text as left-aligned columns (headers from the first row's keys)."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = [[c.ljust(widths[c]) for c in columns]] + [[r[c].ljust(widths[c]) for c in columns] for r in rows]
    return "\n".join("  ".join(line).rstrip() for line in lines)
