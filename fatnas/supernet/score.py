"""Scoring a sub-network with inherited weights: extract, recalibrate BatchNorm, evaluate.

No training by default: a plain FAT(cfg) takes its weights from the supernet, its BatchNorm statistics
are measured afresh on a fixed set of training images (the supernet's running statistics
belong to no sub-network in particular), and it is evaluated on the validation images. With `finetune_steps`
the sub-network first trains that many steps on its own from the inherited weights (fixed images, seeded
augmentation, AdamW with a cosine decay from the supernet's learning rate): a warm-started proxy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..estimate.data import DataSplit, ProxyImages, proxy_images
from ..estimate.proxy import crop_oversized_kernels, crop_padding, evaluate_network, param_groups
from ..model.config import FATConfig
from .elastic import Supernet

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # the public BatchNorm classes


@dataclass(frozen=True)
class FinetuneSettings:
    """A short training of each scored sub-network from its inherited weights, before recalibration."""

    steps: int
    lr: float  # the peak, decayed by a cosine to zero over the steps
    batch_size: int = 64
    weight_decay: float = 0.05


@dataclass(frozen=True)
class SubnetScore:
    """What scoring one sub-network measured."""

    accuracy: float
    val_loss: float
    seconds: float


class SubnetScorer:
    """Scores configs with a trained supernet on fixed recalibration and validation images."""

    def __init__(self, supernet: Supernet, data: DataSplit, res: int, *, recal_images: int = 512,
                 val_images: int = 1000, eval_split: str = "val", seed: int = 0,
                 finetune: FinetuneSettings | None = None) -> None:
        self.supernet, self.res, self.seed, self.finetune = supernet, res, seed, finetune
        device = supernet.full.head.fc.weight.device
        mean, std = data.normalization(device)
        order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))
        self.recal = proxy_images(data.train_x[order[:recal_images]], data.train_y[order[:recal_images]], mean, std,
                                  res, device)
        if finetune is not None:  # the training images after the recalibration's
            tune = order[recal_images:recal_images + finetune.steps * finetune.batch_size]
            self.tune = proxy_images(data.train_x[tune], data.train_y[tune], mean, std, res, device)
        eval_x, eval_y = data.eval_split(eval_split)
        self.val = proxy_images(eval_x[:val_images], eval_y[:val_images], mean, std, res, device)

    def network(self, cfg: FATConfig) -> nn.Module:
        """The sub-network with inherited weights and recalibrated BatchNorm, in eval mode, channels last."""
        network = self.supernet.extract(cfg)
        crop_oversized_kernels(network, self.res, network.cfg.in_chans)
        network = network.to(memory_format=torch.channels_last)
        if self.finetune is not None:
            self._train_briefly(network)
        recalibrate_batchnorm(network, self.recal)
        return network

    def _train_briefly(self, network: nn.Module) -> None:
        """The fine-tuning steps: the same images and augmentation for every config, so scores stay comparable."""
        tune = self.finetune
        network.train()
        optimizer = torch.optim.AdamW(param_groups(network, tune.weight_decay), lr=tune.lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / tune.steps)))
        steps = min(tune.steps, len(self.tune) // tune.batch_size)
        for step in range(steps):
            idx = torch.arange(step * tune.batch_size, (step + 1) * tune.batch_size)
            x, y = self.tune.augmented_batch(idx, crop_padding(self.res),
                                             torch.Generator().manual_seed(self.seed * 1_000_003 + step))
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(network(x), y).backward()
            optimizer.step()
            schedule.step()
        network.eval()

    def score(self, cfg: FATConfig) -> SubnetScore:
        start = time.perf_counter()
        accuracy, loss = evaluate_network(self.network(cfg), self.val)
        return SubnetScore(accuracy=accuracy, val_loss=loss, seconds=time.perf_counter() - start)


@torch.no_grad()
def recalibrate_batchnorm(network: nn.Module, images: ProxyImages, batch: int = 256) -> None:
    """Replace every BatchNorm's running statistics by their exact mean over `images` (the rest in eval)."""
    norms = [m for m in network.modules() if isinstance(m, BATCH_NORMS)]
    network.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: every batch weighs the same
        m.train()
    for start in range(0, len(images), batch):
        network(images.batch(slice(start, start + batch))[0])
    network.eval()


__all__ = ["FinetuneSettings", "SubnetScore", "SubnetScorer", "recalibrate_batchnorm"]
