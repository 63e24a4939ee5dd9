"""A supernet's run folder: run.yaml (the whole recipe), checkpoint.pt, supernet.pt, curves.csv.

`train_supernet` starts or resumes a training; a kill -9 loses at most one checkpoint interval.
`load_supernet` opens a finished one for scoring, refusing a missing or damaged file and a
supernet trained for another task than the one asked for. Weights are read with
`torch.load(weights_only=True)`: a run folder never runs code.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from ..errors import FatnasError
from ..estimate.cost import Budget, flop_convention
from ..estimate.data import DataSplit, load_dataset
from ..estimate.memory import check_memory
from ..estimate.proxy import configure_threads, scaled_lr
from ..model.space import SearchSpace, space_from_dict
from ..paths import atomic_write_bytes, torch_bytes
from ..runs.store import Run, RunError, new_run, open_run
from .elastic import Supernet, largest_config
from .score import FinetuneSettings, SubnetScorer
from .train import Stopwatch, SupernetTrainer, TrainSettings, eval_steps

CHECKPOINT, WEIGHTS, CURVES = "checkpoint.pt", "supernet.pt", "curves.csv"
KIND = "supernet"


@dataclass(frozen=True)
class SupernetTask:
    """What a supernet is trained for, and what a search that uses it must ask for too."""

    space: SearchSpace
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    classes: tuple[int, ...] = ()
    budget: Budget | None = None  # where the budget-only sampling draws; also recorded for the search
    data_seed: int = 0  # the seed of the training/validation split

    def data(self) -> DataSplit:
        return load_dataset(self.dataset, self.data_dir, seed=self.data_seed, classes=self.classes)

    def to_dict(self) -> dict[str, Any]:
        return dict(space=self.space.to_dict(), space_name=self.space.name, dataset=self.dataset,
                    data_dir=self.data_dir, classes=list(self.classes), data_seed=self.data_seed,
                    budget=self.budget.to_dict() if self.budget else None,
                    budget_text=self.budget.describe() if self.budget else None)


def train_supernet(task: SupernetTask, settings: TrainSettings, *, run_id: str | None = None,
                   threads: int | None = None, progress: bool = True, argv: list[str] | None = None) -> Run:
    """Train a new supernet in a new run folder; returns the run."""
    parent = _parent(task, settings)  # refused before any run folder exists
    check_memory(task.space, settings.res, settings.batch_size, settings.device, training=True, what="--res")

    def record(run: Run) -> None:
        run.record(KIND, dict(task=task.to_dict(), train=settings.to_dict(), threads=configure_threads(threads),
                              state="training", **({"init_provenance": parent.provenance} if parent else {})),
                   flop_convention=flop_convention(task.space.resolution), dataset=task.dataset, argv=argv)

    run = new_run(run_id, KIND, record)
    return _train(run, task, settings, progress)


def resume_supernet(run_id: str, *, threads: int | None = None, progress: bool = True) -> Run:
    """Go on with a supernet training from its last checkpoint (a finished one is left as it is)."""
    run = open_run(run_id)
    meta = _supernet_meta(run)
    configure_threads(threads or meta.get("threads"))
    if meta.get("state") == "finished":
        return run
    return _train(run, task_from_meta(meta), TrainSettings(**meta["train"]), progress)


def _train(run: Run, task: SupernetTask, settings: TrainSettings, progress: bool) -> Run:
    data = task.data()
    torch.manual_seed(settings.seed)  # the initial weights; a resumed run then loads its checkpoint's
    supernet = Supernet(task.space, data.in_chans, data.num_classes, res=settings.res,
                        kernel_transform=settings.kernel_transform).to(settings.device)
    trainer = SupernetTrainer(supernet, data, settings, task.budget)
    if (run.path / CHECKPOINT).is_file():
        trainer.load_state_dict(_load(run.path / CHECKPOINT))
    elif settings.init_from is not None:
        supernet.full.load_state_dict(_parent(task, settings).supernet.extract(supernet.full.cfg).state_dict())
    curves = CurveRecorder(run, SubnetScorer(supernet, data, settings.res, recal_images=settings.recal_images,
                                             val_images=settings.val_images, seed=settings.seed))
    points = eval_steps(trainer.total_steps, settings.eval_points)
    watch = Stopwatch(60 * settings.checkpoint_minutes)
    bar = tqdm(total=trainer.total_steps, initial=trainer.step, desc=f"supernet {run.id}", unit="step",
               disable=not progress, dynamic_ncols=True)
    with bar:
        while trainer.step < trainer.total_steps:
            losses = trainer.train_step()
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k in ("largest", "smallest")})
            curves.add_losses(losses)
            if trainer.step in points:
                curves.measure(trainer.step, trainer.step * settings.batch_size)
            if watch.due() or trainer.step == trainer.total_steps:
                _save(run.path / CHECKPOINT, trainer.state_dict())
                watch.lap()
    _finish(run, supernet, trainer.seconds)
    return run


def _parent(task: SupernetTask, settings: TrainSettings) -> TrainedSupernet | None:
    """The supernet whose inherited weights start a few-shot one: trained on the same data set, classes and
    resolution, over a space holding this one's largest network."""
    if settings.init_from is None:
        return None
    parent = load_supernet(settings.init_from, settings.device)
    have = (parent.task.dataset, tuple(parent.task.classes), parent.settings.res)
    if have != (task.dataset, tuple(task.classes), settings.res):
        raise FatnasError(f"--init-from {settings.init_from}: trained for (data set, classes, resolution) {have}, "
                          f"this supernet is for {(task.dataset, tuple(task.classes), settings.res)}")
    parent.supernet.fit(largest_config(task.space, parent.supernet.full.cfg.in_chans,
                                       parent.supernet.full.cfg.num_classes))
    return parent


class CurveRecorder:
    """Learning curves of the largest and smallest sub-networks, appended to curves.csv."""

    def __init__(self, run: Run, scorer: SubnetScorer) -> None:
        self.run, self.scorer = run, scorer
        self.losses: dict[str, list[float]] = {}
        self.start = time.monotonic()

    def add_losses(self, losses: dict[str, float]) -> None:
        for role, value in losses.items():
            self.losses.setdefault(role, []).append(value)

    def measure(self, step: int, images: int) -> None:
        supernet = self.scorer.supernet
        rows = []
        for role, cfg in (("largest", supernet.largest), ("smallest", supernet.smallest)):
            score = self.scorer.score(cfg)
            seen = self.losses.get(role, [])
            rows.append(dict(step=step, images=images, subnet=role, accuracy=score.accuracy, val_loss=score.val_loss,
                             train_loss=sum(seen) / len(seen) if seen else math.nan,
                             seconds=round(time.monotonic() - self.start, 1)))
        self.losses.clear()
        table = pd.concat([self.run.read_table(CURVES), pd.DataFrame(rows)], ignore_index=True)
        self.run.write_table(CURVES, table.drop_duplicates(["step", "subnet"], keep="last"))


def _finish(run: Run, supernet: Supernet, seconds: float) -> None:
    """Write the final weights (only the supernet's, with what built it) and record their hash."""
    state = {"state_dict": supernet.state_dict(), "largest": supernet.full.cfg.to_dict(),
             "space": supernet.space.to_dict()}
    data = torch_bytes(state)
    atomic_write_bytes(run.path / WEIGHTS, data)
    run.update_meta(state="finished", weights=WEIGHTS, weights_sha256=hashlib.sha256(data).hexdigest(),
                    train_seconds=round(seconds, 1))


def _save(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, torch_bytes(state))


def _load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated, foreign or hand-edited file: torch raises many kinds
        raise RunError(f"{path}: not a readable fatnas checkpoint ({type(exc).__name__}); "
                       f"retrain the supernet or restore the file") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: not a fatnas checkpoint (no mapping of tensors inside)")
    return state


def _supernet_meta(run: Run) -> dict[str, Any]:
    meta = run.read_meta()
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind != KIND:
        raise RunError(f"run {run.id!r} is not a supernet run (kind {kind!r}); train one with `fatnas supernet train`")
    for key in ("task", "train"):
        if not isinstance(meta.get(key), dict):
            raise RunError(f"run {run.id!r}: run.yaml has no valid `{key}` section; it is damaged")
    return meta


def task_from_meta(meta: dict[str, Any]) -> SupernetTask:
    task = meta["task"]
    budget = task.get("budget")
    return SupernetTask(space=space_from_dict(task["space"], source=f"run {meta.get('id')}"),
                        dataset=task["dataset"], data_dir=task.get("data_dir"),
                        classes=tuple(task.get("classes") or ()),
                        budget=Budget(**budget) if budget else None, data_seed=int(task.get("data_seed", 0)))


@dataclass
class TrainedSupernet:
    """A finished supernet, ready to score: its weights, task, recipe and provenance."""

    run: Run
    supernet: Supernet
    task: SupernetTask
    settings: TrainSettings
    sha256: str

    @property
    def provenance(self) -> str:
        """`supernet:ID@hash`, as run.yaml and trials.csv name the estimator."""
        return f"supernet:{self.run.id}@{self.sha256[:12]}"

    def scorer(self, data: DataSplit | None = None, *, recal_images: int | None = None,
               val_images: int | None = None, finetune_steps: int = 0, seed: int | None = None) -> SubnetScorer:
        """A scorer on the task's images; `finetune_steps` > 0 trains each sub-network that many steps first
        (at the supernet's batch size and peak learning rate); `seed` picks the recalibration images (None: the
        supernet's own seed)."""
        s = self.settings
        finetune = FinetuneSettings(finetune_steps, scaled_lr(s.lr, s.batch_size), s.batch_size, s.weight_decay) \
            if finetune_steps > 0 else None
        return SubnetScorer(self.supernet, data or self.task.data(), s.res,
                            recal_images=recal_images or s.recal_images, val_images=val_images or s.val_images,
                            seed=s.seed if seed is None else seed, finetune=finetune)


def load_supernet(run_id: str, device: str = "cpu") -> TrainedSupernet:
    """Open a finished supernet run; a missing, unfinished or damaged one is a RunError naming the problem."""
    run = open_run(run_id)
    meta = _supernet_meta(run)
    path = run.path / WEIGHTS
    if meta.get("state") != "finished" or not path.is_file():
        raise RunError(f"supernet {run.id!r} has not finished training (no {WEIGHTS}); "
                       f"resume it with `fatnas supernet train --resume {run.id}`")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("weights_sha256"):
        raise RunError(f"{path}: its sha256 does not match run.yaml's weights_sha256; the file is damaged or replaced")
    task = task_from_meta(meta)
    state = _load(path)
    settings = TrainSettings(**meta["train"])
    supernet = Supernet(task.space, int(state["largest"]["in_chans"]), int(state["largest"]["num_classes"]),
                        kernel_transform=settings.kernel_transform)
    try:
        supernet.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise RunError(f"{path}: its weights do not fit the recorded space ({str(exc).splitlines()[0]})") from None
    return TrainedSupernet(run, supernet.to(device).eval(), task, settings, digest)


def check_task(trained: TrainedSupernet, *, space: SearchSpace, dataset: str, classes: tuple[int, ...],
               res: int) -> None:
    """Refuse a supernet trained for another space, data set, classes or resolution than asked for."""
    task = trained.task
    asked = dict(space=space.to_dict(), dataset=dataset, classes=tuple(classes), resolution=res)
    have = dict(space=task.space.to_dict(), dataset=task.dataset, classes=tuple(task.classes),
                resolution=trained.settings.res)
    for key in asked:
        if asked[key] != have[key]:
            shown = (lambda d: d["name"]) if key == "space" else (lambda v: "all" if v == () else v)
            raise FatnasError(f"supernet {trained.run.id!r} was trained for {key} {shown(have[key])!r}, "
                              f"the search asks for {shown(asked[key])!r}; train one for this task with "
                              f"`fatnas supernet train`")


__all__ = ["SupernetTask", "TrainedSupernet", "check_task", "load_supernet", "resume_supernet", "train_supernet"]
