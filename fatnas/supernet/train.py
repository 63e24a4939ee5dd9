"""Training a supernet once: sandwich sampling, optional in-place distillation, checkpoints that survive kill -9.

Each step draws sub-networks of the space (the sandwich rule: the largest, the smallest and
`random_subnets` random ones; or only random ones), accumulates their gradients on one batch
and takes one AdamW step. Every sub-network learns from the labels; with distillation only the
largest does, and the others learn from its (detached) predictions. Everything a step draws comes
from generators seeded by the step number, so a resumed run takes the same steps as an
uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import FatnasError
from ..estimate.cost import Budget, analytic_cost
from ..estimate.data import DataSplit, ProxyImages, proxy_images
from ..estimate.proxy import crop_padding, param_groups, scaled_lr, warmup_cosine
from ..model.config import FATConfig
from .elastic import Supernet

SAMPLINGS = ("sandwich", "uniform")
MAX_RANDOM_SUBNETS = 64  # per step
BUDGET_TRIES = 1000  # random draws before a budget is called too tight for the space


class SupernetSettingsError(FatnasError):
    """Invalid supernet training settings."""


@dataclass(frozen=True)
class TrainSettings:
    """The recipe of one supernet training (recorded whole in run.yaml)."""

    res: int = 56
    # one pass and no distillation: the recipe that ranked the study's networks best (bench/supernet_ablation.py;
    # 2 passes, distillation and budget-only sampling each ranked worse)
    epochs: float = 1.0  # passes over the training images
    train_images: int | None = None  # the first ones of a seeded permutation of the training part (None: all)
    batch_size: int = 64
    lr: float = 2e-3  # at a batch of 32, square-root scaled like the proxy's
    weight_decay: float = 0.05
    sampling: str = "sandwich"  # 'sandwich' (largest, smallest, random) or 'uniform' (random only)
    random_subnets: int = 2  # random sub-networks per step (uniform: all of them)
    distill: bool = False  # the others learn from the largest's predictions (sandwich only)
    augment: bool = True  # random crops and flips, as the reference trains
    budget_only: bool = False  # random sub-networks drawn only inside the search budget
    kernel_transform: bool = False  # OFA's learned kernel transformation instead of plain centre crops
    init_from: str | None = None  # a trained supernet (run id) whose inherited weights start this one (few-shot)
    eval_points: int = 8  # learning-curve points of the largest and smallest sub-networks
    recal_images: int = 512  # BatchNorm recalibration images per evaluated sub-network
    val_images: int = 1000
    checkpoint_minutes: float = 3.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise SupernetSettingsError(f"sampling {self.sampling!r}; accepted: {', '.join(SAMPLINGS)}")
        for name in ("res", "batch_size", "eval_points", "recal_images", "val_images"):
            if getattr(self, name) < 1:
                raise SupernetSettingsError(f"{name} = {getattr(self, name)}: must be >= 1")
        if self.train_images is not None and self.train_images < self.batch_size:
            raise SupernetSettingsError(f"train_images = {self.train_images}: at least one batch "
                                        f"({self.batch_size}) is needed")
        for name in ("epochs", "checkpoint_minutes"):
            if not math.isfinite(getattr(self, name)) or not getattr(self, name) > 0:
                raise SupernetSettingsError(f"{name} = {getattr(self, name)}: must be a finite number > 0")
        if not 0 <= self.random_subnets <= MAX_RANDOM_SUBNETS:
            raise SupernetSettingsError(f"random_subnets = {self.random_subnets}: must be from 0 to "
                                        f"{MAX_RANDOM_SUBNETS}")
        if self.sampling == "uniform" and self.random_subnets < 1:
            raise SupernetSettingsError("uniform sampling needs random_subnets >= 1")

    @property
    def teacher(self) -> bool:
        """Whether the largest sub-network teaches the others this step."""
        return self.distill and self.sampling == "sandwich"

    def total_steps(self, train_images: int) -> int:
        return max(1, math.ceil(self.epochs * (train_images // self.batch_size)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SubnetSampler:
    """Which sub-networks a step trains: a pure function of the step number."""

    def __init__(self, supernet: Supernet, settings: TrainSettings, budget: Budget | None) -> None:
        self.supernet, self.settings = supernet, settings
        self.budget = budget if settings.budget_only else None

    def draw(self, step: int) -> list[FATConfig]:
        gen = torch.Generator().manual_seed(_step_seed(self.settings.seed, step, 1))
        randoms = [self.random(gen) for _ in range(self.settings.random_subnets)]
        if self.settings.sampling == "uniform":
            return randoms
        return [self.supernet.largest, *randoms, self.supernet.smallest]

    def random(self, gen: torch.Generator) -> FATConfig:
        for _ in range(BUDGET_TRIES):
            cfg = self.supernet.space.sample(lambda name, options: options[_pick(len(options), gen)])
            if self.budget is None or self.budget.fits(analytic_cost(cfg, self.budget.res)):
                return cfg
        raise SupernetSettingsError(f"no random sub-network inside the budget in {BUDGET_TRIES} draws: "
                                    f"{self.budget.describe()}")


def _pick(n: int, gen: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=gen))


def _step_seed(seed: int, step: int, stream: int) -> int:
    return (seed * 1_000_003 + step) * 7 + stream


class BatchSource:
    """Training batches by step number: each epoch a seeded permutation, each step its own augmentation."""

    def __init__(self, images: ProxyImages, settings: TrainSettings) -> None:
        self.images, self.settings = images, settings
        self.per_epoch = len(images) // settings.batch_size
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.int64)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(_step_seed(self.settings.seed, epoch, 2))
            self._epoch, self._order = epoch, torch.randperm(len(self.images), generator=gen)
        size = self.settings.batch_size
        idx = self._order[index * size:(index + 1) * size]
        if not self.settings.augment:
            return self.images.batch(idx.to(self.images.pixels.device))
        gen = torch.Generator().manual_seed(_step_seed(self.settings.seed, step, 3))
        return self.images.augmented_batch(idx, crop_padding(self.settings.res), gen)


class SupernetTrainer:
    """The training state (supernet, optimizer, schedule, step) and one step of it."""

    def __init__(self, supernet: Supernet, data: DataSplit, settings: TrainSettings,
                 budget: Budget | None = None) -> None:
        self.supernet, self.settings = supernet, settings
        self.device = torch.device(settings.device)
        mean, std = data.normalization(self.device)
        keep = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(settings.seed))
        keep = keep[:settings.train_images].sort().values
        self.images = proxy_images(data.train_x[keep], data.train_y[keep], mean, std, settings.res, self.device)
        self.batches = BatchSource(self.images, settings)
        self.sampler = SubnetSampler(supernet, settings, budget)
        self.total_steps = settings.total_steps(len(self.images))
        groups = param_groups(supernet.full, settings.weight_decay)
        if supernet.kernel_transforms is not None:  # no decay: it would pull the matrices from identity to zero
            groups.append({"params": list(supernet.kernel_transforms.parameters()), "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=scaled_lr(settings.lr, settings.batch_size))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(self.total_steps))
        self.step = 0
        self.seconds = 0.0  # training wall time of the steps taken, over every session of a resumed run

    def train_step(self) -> dict[str, float]:
        """One optimizer step over the sub-networks drawn for it; returns each one's loss by role."""
        start = time.monotonic()
        self.supernet.train()
        x, y = self.batches.batch(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        teacher: torch.Tensor | None = None
        losses: dict[str, float] = {}
        for role, cfg in zip(self._roles(), self.sampler.draw(self.step)):
            self.supernet.set_active(cfg)
            logits = self.supernet(x)
            if teacher is None or not self.settings.teacher:
                loss = F.cross_entropy(logits, y)
            else:
                loss = F.kl_div(F.log_softmax(logits, dim=1), teacher, reduction="batchmean")
            loss.backward()
            if role == "largest" and self.settings.teacher:
                teacher = F.softmax(logits.detach(), dim=1)
            losses[role] = float(loss.detach())
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.seconds += time.monotonic() - start
        return losses

    def _roles(self) -> list[str]:
        randoms = [f"random{i}" for i in range(self.settings.random_subnets)]
        return randoms if self.settings.sampling == "uniform" else ["largest", *randoms, "smallest"]

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": self.seconds, "supernet": self.supernet.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.seconds = float(state.get("seconds", 0.0))


def eval_steps(total_steps: int, points: int) -> set[int]:
    """The steps after which the learning curves are measured (the last step among them)."""
    points = min(points, total_steps)
    return {round(total_steps * (i + 1) / points) for i in range(points)}


class Stopwatch:
    """Seconds since start, and whether an interval has passed since the last `lap`."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.start = self.last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.interval_s

    def lap(self) -> None:
        self.last = time.monotonic()


__all__ = ["SAMPLINGS", "BatchSource", "SubnetSampler", "SupernetTrainer", "TrainSettings", "eval_steps"]
