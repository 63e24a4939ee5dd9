"""Scoring a sub-network with inherited weights: extract, recalibrate BatchNorm, evaluate.

No training: a plain FAT(cfg) takes its weights from the supernet, its BatchNorm statistics
are measured afresh on a fixed set of training images (the supernet's running statistics
belong to no sub-network in particular), and it is evaluated on the validation images.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from ..estimate.data import DataSplit, ProxyImages, proxy_images
from ..estimate.proxy import crop_oversized_kernels, evaluate_network
from ..model.config import FATConfig
from .elastic import Supernet

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)  # the public BatchNorm classes


@dataclass(frozen=True)
class SubnetScore:
    """What scoring one sub-network measured."""

    accuracy: float
    val_loss: float
    seconds: float


class SubnetScorer:
    """Scores configs with a trained supernet on fixed recalibration and validation images."""

    def __init__(self, supernet: Supernet, data: DataSplit, res: int, *, recal_images: int = 512,
                 val_images: int = 1000, eval_split: str = "val", seed: int = 0) -> None:
        self.supernet, self.res = supernet, res
        device = supernet.full.head.fc.weight.device
        mean, std = data.normalization(device)
        order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))[:recal_images]
        self.recal = proxy_images(data.train_x[order], data.train_y[order], mean, std, res, device)
        eval_x, eval_y = data.eval_split(eval_split)
        self.val = proxy_images(eval_x[:val_images], eval_y[:val_images], mean, std, res, device)

    def network(self, cfg: FATConfig) -> nn.Module:
        """The sub-network with inherited weights and recalibrated BatchNorm, in eval mode, channels last."""
        network = self.supernet.extract(cfg)
        crop_oversized_kernels(network, self.res, network.cfg.in_chans)
        network = network.to(memory_format=torch.channels_last)
        recalibrate_batchnorm(network, self.recal)
        return network

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


__all__ = ["SubnetScore", "SubnetScorer", "recalibrate_batchnorm"]
