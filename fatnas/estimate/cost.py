"""Analytic cost and budgets: exact params and FLOPs from a config (no module built), fvcore's trace to check
them, and the hard limits a search or study keeps to (measured latency and memory live in `estimate.latency`).

FLOPs are fvcore's total (`FlopCountAnalysis(model, x).total()` at batch 1, eval mode): one
multiply-add counts as one FLOP, and the total adds convolutions, attention matmuls, norms
and the head. The paper's FLOPs column counts convolutions only.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import FatnasError
from ..model.config import NUM_STAGES, FATConfig, stage_output_sizes
from ..model.counting import OPERATORS
from ..model.network import FAT

FLOP_CONVENTION = "fvcore total: 1 multiply-add = 1 FLOP; conv + matmul + norms + head"


def flop_convention(res: int) -> str:
    """How a run's FLOP figures were counted, as recorded in run.yaml and exported variants."""
    return f"fvcore total at {res}x{res}, 1 multiply-add = 1 FLOP"


@dataclass(frozen=True)
class Cost:
    """Analytic cost of one config at one input size."""

    params: int
    flops: int
    flops_by_operator: dict[str, int]
    height: int
    width: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def analytic_cost(cfg: FATConfig, res: int | tuple[int, int] = 224) -> Cost:
    """Params and fvcore-equal FLOPs (by operator) from the config alone, no module built."""
    height, width = (res, res) if isinstance(res, int) else res
    cx = FAT.complexity(cfg, height, width)
    return Cost(cx.params, cx.total_flops, dict(cx.flops), height, width)


def params(cfg: FATConfig) -> int:
    """Parameter count, equal to `sum(p.numel() for p in FAT(cfg).parameters())`."""
    return FAT.complexity(cfg, 1, 1).params


def flops(cfg: FATConfig, res: int | tuple[int, int] = 224) -> int:
    """fvcore total FLOPs at batch 1 for a res (or (height, width)) input."""
    return analytic_cost(cfg, res).flops


def fvcore_cost(model: nn.Module, in_chans: int, res: int | tuple[int, int] = 224) -> Cost:
    """The reference: trace a built model with fvcore (about a second for a FAT)."""
    from fvcore.nn import FlopCountAnalysis

    height, width = (res, res) if isinstance(res, int) else res
    was_training = model.training
    model.eval()
    analysis = FlopCountAnalysis(model, torch.zeros(1, in_chans, height, width))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = {op: int(analysis.by_operator().get(op, 0)) for op in OPERATORS}
    extra = {k: int(v) for k, v in analysis.by_operator().items() if k not in OPERATORS}
    model.train(was_training)
    n_params = sum(p.numel() for p in model.parameters())
    return Cost(n_params, int(analysis.total()), {**by_op, **extra}, height, width)


# ---------------------------------------------------------------- budgets

_UNIT_PREFIX = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BUDGET_RE = re.compile(
    r"^\s*(?P<num>[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|[+-]?\.\d+(?:[eE][+-]?\d+)?)\s*"
    r"(?:(?P<prefix>[kKMGT]?)(?P<unit>flops?|params?)|(?P<time>ms|s))\s*$",
    re.IGNORECASE,
)
MAX_BUDGET = 1e18  # any limit beyond is no limit (a network of 1e18 FLOPs is far outside every space)
BUDGET_FORMS = "2GFLOPs, 500MFLOPs, 1.5e9FLOPs, 5Mparams, 800Kparams, 20ms, 0.05s"


class BudgetError(FatnasError):
    """A budget string that is not one of the accepted forms."""


@dataclass(frozen=True)
class Budget:
    """Hard limits a network must meet; None means no limit. FLOPs are fvcore totals at `res`."""

    max_flops: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None
    res: int = 224

    def describe(self) -> str:
        parts = []
        if self.max_flops is not None:
            parts.append(f"FLOPs <= {format_flops(self.max_flops)} (fvcore total at {self.res}x{self.res})")
        if self.max_params is not None:
            parts.append(f"params <= {self.max_params / 1e6:.2f}M")
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms")
        return ", ".join(parts) or "no budget"

    def violations(self, cost: Cost, latency_ms: float | None = None) -> list[str]:
        """Which limits the cost breaks (empty when it fits)."""
        out = []
        if self.max_flops is not None and cost.flops > self.max_flops:
            out.append(f"FLOPs {format_flops(cost.flops)} > {format_flops(self.max_flops)}")
        if self.max_params is not None and cost.params > self.max_params:
            out.append(f"params {cost.params} > {self.max_params}")
        if self.max_latency_ms is not None and latency_ms is not None and latency_ms > self.max_latency_ms:
            out.append(f"latency {latency_ms:.2f} ms > {self.max_latency_ms:g} ms")
        return out

    def fits(self, cost: Cost, latency_ms: float | None = None) -> bool:
        return not self.violations(cost, latency_ms)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_budget(texts: str | Iterable[str], res: int = 224) -> Budget:
    """Parse what users type (`2GFLOPs`, `5Mparams`, `20ms`, ...), one or several limits."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    limits: dict[str, Any] = {}
    for text in texts:
        kind, value = _parse_one(text)
        if kind in limits:
            raise BudgetError(f"budget {text!r}: a {kind} limit was already given; give each kind once "
                              f"(accepted forms: {BUDGET_FORMS})")
        limits[kind] = value
    return Budget(res=res, **limits)


def _parse_one(text: str) -> tuple[str, Any]:
    m = _BUDGET_RE.match(text or "")
    if not m:
        raise BudgetError(f"malformed budget {text!r}; accepted forms: {BUDGET_FORMS}")
    number = float(m["num"])
    if not math.isfinite(number):
        raise BudgetError(f"budget {text!r} is not a finite number; accepted forms: {BUDGET_FORMS}")
    if number <= 0:
        raise BudgetError(f"budget {text!r} must be positive; accepted forms: {BUDGET_FORMS}")
    scale = (1.0 if m["time"].lower() == "ms" else 1000.0) if m["time"] else _UNIT_PREFIX[m["prefix"].upper()]
    if not number * scale <= MAX_BUDGET:  # 1e300GFLOPs overflows to inf
        raise BudgetError(f"budget {text!r} is above {MAX_BUDGET:.0e} (FLOPs, params or ms); "
                          f"accepted forms: {BUDGET_FORMS}")
    if m["time"]:
        return "max_latency_ms", number * scale
    value = int(round(number * scale))
    if value < 1:
        raise BudgetError(f"budget {text!r} rounds to zero; accepted forms: {BUDGET_FORMS}")
    return ("max_flops" if m["unit"].lower().startswith("flop") else "max_params"), value


def paper_comparison(res: int = 224) -> list[dict[str, Any]]:
    """fat_b0..b3 priced here beside the paper's figures: params, fvcore-total GFLOPs, conv-only GFLOPs (the
    paper's convention), the paper's GFLOPs and ImageNet top-1 (which fatnas never measures)."""
    from ..model.variants import PAPER_FIGURES, get_config

    rows = []
    for name, paper in PAPER_FIGURES.items():
        cost = analytic_cost(get_config(name), res)
        rows.append(dict(name=name, params_M=round(cost.params / 1e6, 2), paper_params_M=paper["params_m"],
                         GFLOPs_total=round(cost.flops / 1e9, 3),
                         GFLOPs_conv_only=round(cost.flops_by_operator["conv"] / 1e9, 3),
                         paper_GFLOPs=paper["flops_g"], paper_top1_imagenet=paper["top1"]))
    return rows


def format_flops(n: float) -> str:
    return f"{n / 1e9:.3f} GFLOPs" if n >= 1e8 else f"{n / 1e6:.2f} MFLOPs"


def stage_rows(cfg: FATConfig, res: int | tuple[int, int] = 224) -> list[dict[str, Any]]:
    """One row per stage: its hyper-parameters, the size its blocks work at and its output size."""
    height, width = (res, res) if isinstance(res, int) else res
    sizes = stage_output_sizes(height, width)
    rows = []
    for s in range(NUM_STAGES):
        h, w = sizes[s]
        rows.append(dict(
            stage=s, width=cfg.widths[s], depth=cfg.depths[s], heads=cfg.heads[s],
            head_dim=cfg.widths[s] // cfg.heads[s], kernel=cfg.kernels[s], window=cfg.windows[s],
            pooled=f"{-(-h // cfg.windows[s])}x{-(-w // cfg.windows[s])}",
            ffn_ratio=cfg.ffn_ratios[s], ffn_kernel=cfg.ffn_kernels[s], size=f"{h}x{w}",
            out=f"{-(-h // 2)}x{-(-w // 2)}" if s < NUM_STAGES - 1 else f"{h}x{w}",
        ))
    return rows
