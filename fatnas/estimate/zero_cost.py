"""Zero-cost proxies: score an untrained FAT from one minibatch; higher should mean better after training.

- synflow (Tanaka et al. 2020): sum of |theta * dR/dtheta|, R the summed output of the network
  with every parameter replaced by its absolute value, on an all-ones input, in float64;
  BatchNorm runs on its initial statistics (an affine map), as in Abdelfattah et al. (2021).
- grad_norm: sum over conv and linear weights of the L2 norm of the loss gradient.
- snip (Lee et al. 2019): sum over conv and linear weights of |theta * dL/dtheta|.
- naswot (Mellor et al. 2021): log-determinant of the Hamming-similarity kernel of the binary
  activation patterns (input > 0 of every ReLU and GELU) over the minibatch.

`params` and `flops` (the cost model's figures) are the plain baselines every study shows
beside them. Scores are deterministic for a given config, minibatch seed and thread count.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import FatnasError
from ..model.config import FATConfig
from ..model.network import FAT
from .base import Estimate, Report, register_estimator
from .cost import analytic_cost
from .data import DataSplit, prepare_images
from .proxy import crop_oversized_kernels

ZERO_COST_PROXIES = ("synflow", "grad_norm", "snip", "naswot")
BASELINES = ("params", "flops")
PROXIES = ZERO_COST_PROXIES + BASELINES
DEFAULT_BATCH = 64

NetworkScore = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class ProxyScore:
    """One proxy's score of one network and the seconds it took (model build included)."""

    proxy: str
    value: float
    seconds: float


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Synaptic flow of the network with absolute-valued parameters on an all-ones input (float64)."""
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad(set_to_none=True)
    model(torch.ones_like(x[:1], dtype=torch.float64)).sum().backward()  # data-free: one image suffices
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in model.parameters() if p.grad is not None))


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Sum of the L2 norms of the cross-entropy gradient of each conv and linear weight."""
    weights = _loss_gradients(model, x, y)
    with torch.no_grad():
        return float(sum(p.grad.norm() for p in weights))


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Connection sensitivity: sum of |weight * gradient| over conv and linear weights."""
    weights = _loss_gradients(model, x, y)
    with torch.no_grad():
        return float(sum((p * p.grad).abs().sum() for p in weights))


def naswot(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """log|K|, K[i, j] = number of activation units on which images i and j agree (input > 0)."""
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64)

    def record(module: nn.Module, inputs: tuple) -> None:
        codes = (inputs[0].detach().flatten(1) > 0).to(torch.float64)
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
    try:
        with torch.no_grad():
            model.train()(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


NETWORK_SCORES: dict[str, NetworkScore] = {"synflow": synflow, "grad_norm": grad_norm, "snip": snip,
                                           "naswot": naswot}


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[nn.Parameter]:
    """Backpropagate one cross-entropy loss (train mode); returns the conv and linear weights."""
    model.train().zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [p for p in model.parameters() if p.ndim > 1 and p.grad is not None]


def check_proxy(name: str) -> str:
    """`name` if it is a known proxy, else a FatnasError naming the accepted ones."""
    if name not in PROXIES:
        raise FatnasError(f"unknown proxy {name!r}; accepted: {', '.join(PROXIES)}")
    return name


def minibatch(data: DataSplit, *, res: int, batch_size: int = DEFAULT_BATCH,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded minibatch of training images, normalized and resized to res x res."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.train_x), generator=gen)[:batch_size]
    mean, std = data.normalization()
    return prepare_images(data.train_x[idx], mean, std, res), data.train_y[idx]


def score_config(proxy: str, cfg: FATConfig, batch: tuple[torch.Tensor, torch.Tensor], *,
                 num_classes: int, seed: int = 0, cost_res: int = 224) -> ProxyScore:
    """Score `cfg` with one proxy: zero-cost ones on a freshly initialized (seeded) network and `batch`.

    The baselines need no network: `params`, and `flops` at cost_res (fvcore total).
    """
    start = time.perf_counter()
    x, y = batch
    # no stochastic depth: a score must not depend on which branches a random draw dropped
    cfg = cfg.replace(in_chans=x.shape[1], num_classes=num_classes, drop_path_rate=0.0)
    if check_proxy(proxy) in BASELINES:
        cost = analytic_cost(cfg, cost_res)
        value = float(cost.params if proxy == "params" else cost.flops)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = FAT(cfg)
            crop_oversized_kernels(model, x.shape[-1], x.shape[1])
            value = NETWORK_SCORES[proxy](model, x, y)
    return ProxyScore(proxy, value, time.perf_counter() - start)


class ZeroCostEstimator:
    """The `zero-cost:NAME` estimator: one proxy's score of a freshly initialized network on one seeded minibatch
    (or, for the `params` and `flops` baselines, the analytic size at `cost_res`)."""

    def __init__(self, proxy: str, batch: tuple[torch.Tensor, torch.Tensor], *, num_classes: int, seed: int = 0,
                 cost_res: int = 224) -> None:
        self.name, self.batch = check_proxy(proxy), batch
        self.num_classes, self.seed, self.cost_res = num_classes, seed, cost_res

    @classmethod
    def from_spec(cls, argument: str, *, data: DataSplit, res: int, batch_size: int = DEFAULT_BATCH, seed: int = 0,
                  cost_res: int = 224, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                  **context: Any) -> "ZeroCostEstimator":
        """`res`, `batch_size` and `seed` draw the minibatch from `data` (unless `batch` is given)."""
        batch = batch if batch is not None else minibatch(data, res=res, batch_size=batch_size, seed=seed)
        return cls(argument, batch, num_classes=data.num_classes, seed=seed, cost_res=cost_res)

    def estimate(self, cfg: FATConfig, report: Report | None = None) -> Estimate:
        scored = score_config(self.name, cfg, self.batch, num_classes=self.num_classes, seed=self.seed,
                              cost_res=self.cost_res)
        return Estimate(score=scored.value, metrics=dict(score=scored.value), seconds=scored.seconds,
                        provenance=f"zero-cost:{self.name}")


register_estimator("zero-cost", ZeroCostEstimator.from_spec)


__all__ = ["BASELINES", "NETWORK_SCORES", "PROXIES", "ProxyScore", "ZERO_COST_PROXIES", "check_proxy",
           "ZeroCostEstimator", "grad_norm", "minibatch", "naswot", "score_config", "snip", "synflow"]
