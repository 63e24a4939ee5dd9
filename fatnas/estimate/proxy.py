"""Proxy evaluation: a short, seeded training of a sampled FAT on a small task.

`train_proxy` trains for `train_images * epochs` images with AdamW and a warmup + cosine
schedule, evaluates on a fixed validation subset at `eval_every` checkpoints and lets a
`report(checkpoint, accuracy)` callback (an Optuna pruner, say) stop it early. The images a
trial uses are normalized and resized once, channels last, and the network trains in that
layout. On CPU the result is deterministic for a given config, data split, settings and
thread count.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FatnasError
from ..model.config import FATConfig
from ..model.network import FAT
from .base import Estimate, Report, register_estimator
from .data import EVAL_SPLITS, DataSplit, ProxyImages, proxy_images
from .fast_step import accelerate, conv_input_sizes
from .liveness import proxy_config

EVAL_BATCH = 500
MAX_EPOCHS = 1000  # passes over a trial's images
WARMUP_FRACTION = 0.1
LR_REFERENCE_BATCH = 32  # `lr` is the rate at this batch size; others scale it by sqrt(batch / 32)
BN_MOMENTUM = 0.1  # BatchNorm's running-statistics momentum at LR_REFERENCE_BATCH


class ProxyError(FatnasError):
    """Invalid proxy settings: a size below 1, an unknown evaluation split or device."""


def scaled_lr(lr: float, batch: int) -> float:
    """The learning rate `lr` (given at LR_REFERENCE_BATCH) at `batch`: square-root scaling, as suits AdamW."""
    return lr * math.sqrt(batch / LR_REFERENCE_BATCH)


def crop_padding(res: int) -> int:
    """Pixels of zero padding around a random crop: 4 at 32 px, scaled with the resolution."""
    return max(1, round(res / 8))


@dataclass(frozen=True)
class ProxySettings:
    """How one proxy trial trains: `train_images` distinct images, each seen `epochs` times."""

    # 56 px: the stages see 14, 7, 4 and 2 px maps, where as many kernel/window/head choices build
    # distinct networks as at 64 px (fatnas.estimate.liveness), at 3/4 of the cost
    res: int = 56
    train_images: int = 1024
    epochs: int = 1
    batch_size: int = 64  # channels-last batches of 64 train ~1.3x faster than 32 on CPU, at ~equal accuracy
    lr: float = 2e-3  # at a batch of LR_REFERENCE_BATCH; scaled by sqrt(batch_size / 32) (see scaled_lr)
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    # 2 checkpoints of 1,000 validation images ranked networks best in bench/fidelity_bench.py
    eval_every: int = 2  # number of validation checkpoints spread over training
    val_images: int = 1000  # images of the evaluation split, the first ones of it
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # bf16 (or fp16) autocast, CUDA only
    channels_last: bool = True
    augment: bool = False  # random crops (padding res / 8) and horizontal flips of the training images
    eval_split: str = "val"  # 'val' (carved from the training images) or 'test' (the official split, references only)

    def __post_init__(self) -> None:
        for name in ("res", "train_images", "epochs", "batch_size", "eval_every", "val_images"):
            if getattr(self, name) < 1:
                raise ProxyError(f"ProxySettings.{name} = {getattr(self, name)!r}: must be >= 1")
        if self.epochs > MAX_EPOCHS:
            raise ProxyError(f"ProxySettings.epochs = {self.epochs!r}: at most {MAX_EPOCHS} passes over the images")
        if self.eval_split not in EVAL_SPLITS:
            raise ProxyError(f"ProxySettings.eval_split = {self.eval_split!r}: expected 'val' or 'test'")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ProxyError(f"ProxySettings.device = {self.device!r}: expected 'cpu' or 'cuda[:N]'")

    @property
    def images_per_trial(self) -> int:
        return self.train_images * self.epochs

    def scaled_lr(self, batch: int) -> float:
        return scaled_lr(self.lr, batch)

    @property
    def crop_padding(self) -> int:
        return crop_padding(self.res)

    def schedule(self, available_images: int) -> tuple[int, int]:
        """(batch size, total steps) of one trial given the training images available; full batches only."""
        n_train = min(self.train_images, available_images)
        batch = min(self.batch_size, n_train)
        return batch, (n_train // batch) * self.epochs

    def checkpoint_images(self, available_images: int) -> list[int]:
        """Images seen at each validation checkpoint of a trial, in order."""
        batch, total_steps = self.schedule(available_images)
        return [step * batch for step in sorted(_checkpoint_steps(total_steps, self.eval_every))]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ProxySettings":
        return dataclasses.replace(self, **changes)


@dataclass
class ProxyResult:
    """What one proxy trial measured; `curve` holds (images seen, validation accuracy) per checkpoint."""

    accuracy: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    train_seconds: float = 0.0  # training only; evaluations are in eval_seconds
    eval_seconds: float = 0.0
    images_seen: int = 0
    pruned: bool = False
    images_per_second: float = 0.0
    train_loss: float = float("nan")  # mean training loss since the previous checkpoint
    val_loss: float = float("nan")  # mean validation cross-entropy at the last checkpoint
    val_losses: list[float] = field(default_factory=list)  # one per checkpoint, as `curve`
    sotl_e: float = float("nan")  # SoTL-E: mean training loss over the later half of the steps run
    curve_slope: float = float("nan")  # accuracy gained per 1,000 images between the last two checkpoints

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the cores this process may run on); returns the count."""
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def retain_freed_memory() -> bool:
    """Keep freed tensor memory in this process for reuse instead of handing it back to the OS (glibc only).

    By default glibc unmaps every large freed buffer and the next allocation faults its pages in
    again, which is slow on small shared VMs. It pays where a step allocates large fresh buffers,
    as a supernet step does (it copies its sliced weights every step: smallest sub-network steps
    ran 2-3x faster in a one-off check); for the proxy trainer it changes nothing measurable
    (bench/malloc_bench.py: 0.98x). Returns whether it took effect.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def train_proxy(cfg: FATConfig, data: DataSplit, settings: ProxySettings,
                report: Report | None = None, *, fast: bool = True) -> ProxyResult:
    """Train `cfg` briefly on `data` and return its validation accuracy; `report` returning True prunes.

    `fast` (the default) trains on CPU with the fast path of `fatnas.estimate.fast_step` (the same function,
    convolutions computed in faster forms) and a fused AdamW; `fast=False` trains as before that path existed.
    The caller's random state is left as it was.
    """
    device = torch.device(settings.device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return proxy_trainer(cfg, data, settings, fast=fast).run(report)


def proxy_trainer(cfg: FATConfig, data: DataSplit, settings: ProxySettings, *, fast: bool = True) -> "ProxyTrainer":
    """The trainer of one proxy trial, its network built from the seed (which it sets globally); see `train_proxy`."""
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    network = proxy_config(cfg, settings.res).replace(in_chans=data.in_chans, num_classes=data.num_classes)
    model = FAT(network).to(device)
    crop_oversized_kernels(model, settings.res, data.in_chans)
    fast = fast and device.type == "cpu"
    if fast:
        accelerate(model, settings.res, data.in_chans)
    model = model.to(memory_format=torch.channels_last if settings.channels_last else torch.contiguous_format)
    return ProxyTrainer(model, data, settings, device, fused_optimizer=fast)


class _CroppedConv2d(nn.Conv2d):
    """A convolution whose outer `crop` rings of taps only ever meet zero padding, skipped."""

    crop: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (kh, kw) = self.crop, self.kernel_size
        weight = self.weight[:, :, c:kh - c, c:kw - c]
        padding = (self.padding[0] - c, self.padding[1] - c)
        return F.conv2d(x, weight, self.bias, self.stride, padding, self.dilation, self.groups)


def crop_oversized_kernels(model: nn.Module, res: int, in_chans: int) -> int:
    """Make the model's convolutions skip taps that only see padding at res x res (in place); returns how many.

    At proxy resolutions the late stages' maps (2 x 2, 1 x 1) are smaller than their 5-9 wide
    depthwise kernels; the outputs and gradients are unchanged, the CPU time about halves.
    """
    shapes = {m: size for m, size in conv_input_sizes(model, res, in_chans).items()
              if type(m) is nn.Conv2d and max(m.kernel_size) > 1}
    cropped = 0
    for m, (h, w, oh, ow) in shapes.items():
        crop = min(_dead_taps(m.kernel_size[0], m.padding[0], m.stride[0], h, oh),
                   _dead_taps(m.kernel_size[1], m.padding[1], m.stride[1], w, ow))
        if crop > 0 and m.dilation == (1, 1) and m.padding_mode == "zeros":
            m.__class__, m.crop = _CroppedConv2d, crop
            cropped += 1
    return cropped


def _dead_taps(kernel: int, padding: int, stride: int, size: int, out: int) -> int:
    """How many taps on each side of a symmetric kernel read only zero padding, for every output."""
    if kernel != 2 * padding + 1:
        return 0
    return max(0, min(padding - (out - 1) * stride, padding + 1 - size))


class ProxyTrainer:
    """The loop of one proxy trial; holds its images, prepared once, on the training device."""

    def __init__(self, model: nn.Module, data: DataSplit, s: ProxySettings, device: torch.device, *,
                 fused_optimizer: bool = False) -> None:
        self.model, self.s, self.device = model, s, device
        gen = torch.Generator().manual_seed(s.seed)
        n_train = min(s.train_images, len(data.train_x))
        self.batch_size, self.total_steps = s.schedule(len(data.train_x))
        subset = torch.randperm(len(data.train_x), generator=gen)[:n_train]
        mean, std = data.normalization(device)
        self.train = proxy_images(data.train_x.index_select(0, subset), data.train_y.index_select(0, subset),
                                  mean, std, s.res, device)
        eval_x, eval_y = data.eval_split(s.eval_split)
        n_val = min(s.val_images, len(eval_x))
        self.val = proxy_images(eval_x[:n_val], eval_y[:n_val], mean, std, s.res, device)
        self.gen = gen
        self.steps_per_epoch = n_train // self.batch_size  # full batches only (BatchNorm needs > 1)
        # fused: one kernel for all parameters; on CPU 4x faster than the default loop (bench/trainer_profile.py)
        self.optimizer = torch.optim.AdamW(param_groups(model, s.weight_decay), lr=s.scaled_lr(self.batch_size),
                                           fused=fused_optimizer or None)
        _scale_bn_momentum(model, self.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(self.total_steps))
        self.amp_dtype = _amp_dtype(device) if s.amp else None
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def run(self, report: Report | None) -> ProxyResult:
        checkpoints = _checkpoint_steps(self.total_steps, self.s.eval_every)
        result = ProxyResult(accuracy=0.0)
        losses = torch.zeros(self.total_steps, device=self.device)  # one per step, read at checkpoints only
        since = 0
        start = time.perf_counter()
        self.model.train()
        for step, (x, y) in enumerate(self.train_batches(), start=1):
            losses[step - 1] = self.train_step(x, y)
            result.images_seen += len(y)
            if step not in checkpoints:
                continue
            eval_start = time.perf_counter()
            acc, val_loss = self.evaluate()
            result.eval_seconds += time.perf_counter() - eval_start
            result.curve.append((result.images_seen, acc))
            result.val_losses.append(val_loss)
            result.accuracy, result.val_loss = acc, val_loss
            result.train_loss, since = float(losses[since:step].mean()), step
            if report is not None and report(len(result.curve) - 1, acc):
                result.pruned = True
                break
        result.train_seconds = time.perf_counter() - start - result.eval_seconds
        result.images_per_second = result.images_seen / max(result.train_seconds, 1e-9)
        result.sotl_e = float(losses[since // 2:since].mean())
        result.curve_slope = _slope(result.curve)
        return result

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The trial's training batches in order: every epoch a seeded shuffle, full batches only."""
        batch, pad = self.batch_size, self.s.crop_padding
        for _ in range(self.s.epochs):
            order = torch.randperm(len(self.train), generator=self.gen)
            for i in range(self.steps_per_epoch):
                idx = order[i * batch:(i + 1) * batch]
                if self.s.augment:
                    yield self.train.augmented_batch(idx, pad, self.gen)
                else:
                    yield self.train.batch(idx.to(self.device))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer and schedule step on the batch (x, y); returns the batch's loss (not synchronised)."""
        with self._autocast():
            logits = self.model(self._layout(x))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.s.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def evaluate(self) -> tuple[float, float]:
        """Top-1 accuracy and mean cross-entropy on the evaluation subset."""
        result = evaluate_network(self.model, self.val, layout=self._layout, autocast=self._autocast)
        self.model.train()
        return result

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """Batches come with channels-last strides; an NCHW-trained model gets them contiguous."""
        return x if self.s.channels_last else x.contiguous()

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)


def _scale_bn_momentum(model: nn.Module, batch: int) -> None:
    """Give BatchNorm the running-statistics memory, in images, that momentum 0.1 has at a batch of 32.

    Short trials take few steps; at the default momentum their running statistics, which
    evaluation uses, would still lean on the initial ones when a large batch is used.
    """
    momentum = 1.0 - (1.0 - BN_MOMENTUM) ** (batch / LR_REFERENCE_BATCH)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum


def _slope(curve: list[tuple[int, float]]) -> float:
    """Accuracy gained per 1,000 images between the last two checkpoints (NaN with fewer than two)."""
    if len(curve) < 2:
        return float("nan")
    (n0, a0), (n1, a1) = curve[-2], curve[-1]
    return 1000.0 * (a1 - a0) / (n1 - n0)


@torch.inference_mode()
def evaluate_network(network: nn.Module, images: ProxyImages, *,
                     layout: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
                     autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
                     ) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of `network` (put in eval mode) on `images`, read from the device
    once, at the end."""
    network.eval()
    device = images.labels.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(images), EVAL_BATCH):
        x, y = images.batch(slice(start, start + EVAL_BATCH))
        with autocast():
            logits = network(layout(x)).float()
        correct += (logits.argmax(dim=1) == y).sum()
        loss += F.cross_entropy(logits, y, reduction="sum")
    return int(correct) / len(images), float(loss) / len(images)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv and linear weights only, not on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(total_steps: int) -> Callable[[int], float]:
    """LR factor: linear warmup over the first 10% of steps, then cosine decay to zero."""
    warmup = max(1, round(WARMUP_FRACTION * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _checkpoint_steps(total_steps: int, count: int) -> set[int]:
    """`count` (at most `total_steps`) evenly spread step numbers; the last is the final step."""
    count = min(count, total_steps)
    return {round(total_steps * (i + 1) / count) for i in range(count)}


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class ProxyEstimator:
    """The `proxy` estimator: train briefly (`train_proxy`) and score the final validation accuracy."""

    name = "proxy"

    def __init__(self, settings: ProxySettings, data: DataSplit) -> None:
        self.settings, self.data = settings, data

    @classmethod
    def from_spec(cls, argument: str = "", *, proxy: ProxySettings | None = None, data: DataSplit,
                  **context: Any) -> "ProxyEstimator":
        if argument:
            raise ProxyError(f"estimator 'proxy:{argument}': the proxy takes its settings from the context, "
                             "not from the spec")
        return cls(proxy if proxy is not None else ProxySettings(), data)

    @property
    def provenance(self) -> str:
        s = self.settings
        return f"proxy:res={s.res},train_images={s.train_images},epochs={s.epochs},seed={s.seed}"

    def estimate(self, cfg: FATConfig, report: Report | None = None) -> Estimate:
        start = time.perf_counter()
        result = train_proxy(cfg, self.data, self.settings, report)
        metrics = dict(accuracy=result.accuracy, val_loss=result.val_loss, sotl_e=result.sotl_e,
                       curve_slope=result.curve_slope, images_seen=float(result.images_seen))
        return Estimate(score=result.accuracy, metrics=metrics, seconds=time.perf_counter() - start,
                        provenance=self.provenance, curve=tuple(result.curve), stopped=result.pruned)


register_estimator("proxy", ProxyEstimator.from_spec)


__all__ = ["ProxyError", "ProxyEstimator", "ProxyResult", "ProxySettings", "ProxyTrainer", "configure_threads",
           "crop_oversized_kernels", "evaluate_network", "param_groups", "proxy_trainer", "retain_freed_memory",
           "train_proxy", "warmup_cosine"]
