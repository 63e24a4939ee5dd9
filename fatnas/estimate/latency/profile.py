"""Profiling a latency table on the target device (`fatnas latency-profile`).

`profile_space` times every part the space can build: the stem, the first half of a block (positional DW,
norm and FASA, by width, kernel, heads and window), the second half (norm and ConvFFN, plus the
downsampling shortcut in a stage's last block) and the head, at the map size the part sees at the
table's resolution. With torch the parts are timed in context, inside carrier networks that together
hold them all; with ONNX Runtime each part is its own graph. Every pass follows a pass of a fixed
reference network (fat_b0) and parts are stored in units of it, so host drift during profiling cancels
out. A few whole networks calibrate one factor for what the parts miss.
"""
from __future__ import annotations

import math
import platform
import random
import re
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import torch
from torch import nn

from ..._version import __version__
from ...model.config import NUM_STAGES, BlockPlan, FATConfig, stage_output_sizes
from ...model.network import FAT
from ...model.space import SearchSpace, snap_heads
from .measure import RUNTIMES, ReferenceClock, device_name, reference_network, torch_threads
from .table import (
    LatencyModelError,
    LatencyTable,
    config_parts,
    ffn_key,
    mixer_key,
    space_fingerprint,
    space_parts,
    stage_options,
)

CALIBRATION_SEED = 90_001  # calibration networks; benchmarks draw theirs from other seeds
CALIBRATION_NETWORKS = 10


# ---------------------------------------------------------------- profiling on the target

@dataclass(frozen=True)
class ProfileSettings:
    """Where and how a table is measured."""

    device: str = "cpu"
    runtime: str = "torch"
    threads: int = 1
    batch: int = 1
    res: int | None = None  # default: the space's resolution
    warmup: int = 2  # untimed passes of each part
    repeats: int = 25  # rounds of (reference pass, part or carrier pass)
    calibration_repeats: int = 15  # rounds per whole calibration network

    def check(self) -> None:
        if self.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", self.device):
            raise LatencyModelError(f"--device {self.device!r}: accepted cpu, cuda or cuda:N")
        if self.runtime not in RUNTIMES:
            raise LatencyModelError(f"--runtime {self.runtime!r}: accepted {', '.join(RUNTIMES)}")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise LatencyModelError("--device cuda: no CUDA device is visible to torch here; "
                                    "profile on the target machine")
        for name in ("threads", "batch", "repeats"):
            if getattr(self, name) < 1:
                raise LatencyModelError(f"--{name} {getattr(self, name)}: must be an integer >= 1")





class RelativeTimer:
    """Times pieces in rounds alternating with the reference network (fat_b0), in units of it.

    The reference pass between two passes of a part stands in for the rest of a network: it
    evicts the part's weights from the caches as a whole network would, and host drift hits
    both alike. The reference and its passes are a `ReferenceClock`'s: `samples` keeps every one,
    `reference_ms` is their median. torch passes run on the settings' threads, whatever torch's are outside.
    """

    def __init__(self, settings: ProfileSettings, res: int, in_chans: int) -> None:
        self.settings = settings
        self.clock = ReferenceClock(reference_network(in_chans), res=res, in_chans=in_chans,
                                    batch_size=settings.batch, device=settings.device, threads=settings.threads,
                                    warmup=settings.warmup, repeats=settings.repeats, runtime=settings.runtime)
        self.reference = self.clock.reference
        with torch_threads(settings.threads), torch.inference_mode():
            for _ in range(settings.warmup):
                self.reference()

    @property
    def samples(self) -> list[float]:
        """Every reference pass so far, in ms."""
        return self.clock.reference_samples

    @property
    def reference_ms(self) -> float:
        return self.clock.reference_ms

    def ratio(self, module: nn.Module, shape: tuple[int, ...], repeats: int | None = None,
              typical: Callable[[list[float]], float] = statistics.median) -> float:
        """`typical` (the median) over rounds of (module's pass / the reference's pass just before it)."""
        one_pass = self.clock.timer(module, torch.randn(self.settings.batch, *shape))
        ratios = []
        with torch_threads(self.settings.threads), torch.inference_mode():
            for _ in range(self.settings.warmup):
                one_pass()
            for _ in range(repeats or self.settings.repeats):
                ref = self.reference()
                ratios.append(one_pass() / ref)
                self.samples.append(ref)
        return typical(ratios)


def sample_configs(space: SearchSpace, n: int, seed: int) -> list[FATConfig]:
    """`n` configs of the space drawn uniformly with a seeded generator."""
    rng = random.Random(seed)
    return [space.sample(lambda name, options: rng.choice(list(options))) for _ in range(n)]


def profile_space(space: SearchSpace, settings: ProfileSettings, *, in_chans: int = 3, num_classes: int = 1000,
                  progress: Callable[[int, int], None] | None = None) -> LatencyTable:
    """Time every part of `space` on this machine, then calibrate on a few whole networks.

    torch: parts are timed in context, inside carrier networks that together hold every part
    (`carrier_configs`), one pass of a carrier after each reference pass. onnxruntime: each part
    is its own small graph and session, timed alone in rounds with the reference.
    """
    settings.check()
    res = settings.res or space.resolution
    start = time.perf_counter()
    with torch_threads(settings.threads):
        timer = RelativeTimer(settings, res, in_chans)
        if settings.runtime == "torch":
            table = _profile_in_context(space, timer, res, in_chans, num_classes, progress)
        else:
            table = _profile_alone(space, timer, res, in_chans, num_classes, progress)
        calibration = _calibrate(space, timer, table, res, in_chans, num_classes)
    factor = statistics.median(c["measured"] / c["summed"] for c in calibration)
    meta = dict(versions=library_versions(settings.runtime), device_name=device_name(settings.device),
                created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                profile_seconds=round(time.perf_counter() - start, 1), warmup=settings.warmup,
                repeats=settings.repeats, reference="fat_b0 (seed 0 weights)",
                method="in context, in carrier networks" if settings.runtime == "torch" else "each part alone",
                calibration=dict(seed=CALIBRATION_SEED, networks=calibration),
                units="parts: a part's pass over the reference's (mean less the top quarter); "
                      "ms = factor x sum x reference_ms")
    return LatencyTable(device=settings.device.split(":")[0], runtime=settings.runtime, threads=settings.threads,
                        batch=settings.batch, res=res, in_chans=in_chans, num_classes=num_classes,
                        space=dict(name=space.name, fingerprint=space_fingerprint(space)),
                        reference_ms=timer.reference_ms, factor=factor, parts=table, meta=meta)


def _profile_alone(space: SearchSpace, timer: RelativeTimer, res: int, in_chans: int, num_classes: int,
                   progress: Callable[[int, int], None] | None) -> dict[str, float]:
    parts = space_parts(space, res, in_chans, num_classes)
    table: dict[str, float] = {}
    for i, part in enumerate(parts):
        torch.manual_seed(0)
        table[part.key] = timer.ratio(part.build(), part.input_shape, typical=typical_share)
        if progress:
            progress(i + 1, len(parts))
    return table


def _profile_in_context(space: SearchSpace, timer: RelativeTimer, res: int, in_chans: int, num_classes: int,
                        progress: Callable[[int, int], None] | None) -> dict[str, float]:
    """Each part's median, over every pass of every carrier holding it, of its time over the reference pass before."""
    s = timer.settings
    dev = torch.device(s.device)
    carriers = carrier_configs(space, res, in_chans, num_classes)
    seen: dict[str, list[float]] = {}
    for i, cfg in enumerate(carriers):
        torch.manual_seed(0)
        model = FAT(cfg).eval().to(dev)
        keys = [p.key for p in config_parts(cfg, res)]
        x = torch.randn(s.batch, in_chans, res, res, device=dev)
        with torch.inference_mode():
            for _ in range(s.warmup):
                timed_parts(model, x)
            for _ in range(s.repeats):
                ref = timer.reference()
                timer.samples.append(ref)
                for key, ms in zip(keys, timed_parts(model, x)):
                    seen.setdefault(key, []).append(ms / ref)
        if progress:
            progress(i + 1, len(carriers))
    return {key: typical_share(values) for key, values in seen.items()}


def typical_share(ratios: list[float], trim: float = 0.25) -> float:
    """The mean of a part's ratios less the highest `trim` of them.

    Means add up where medians do not: on a shared host a pass is now and then preempted, and a
    whole network's pass collects those stalls over all its parts, which per-part medians drop.
    The longest stalls (the top quarter) are left out, as the whole network's median leaves them out.
    """
    kept = sorted(ratios)[:max(1, math.ceil(len(ratios) * (1 - trim)))]
    return statistics.fmean(kept)


def timed_parts(model: FAT, x: torch.Tensor) -> list[float]:
    """One forward pass, part by part (as `config_parts` lists them), with each part's milliseconds.

    CUDA: an event between parts, one synchronisation at the end; CPU: perf_counter.
    """
    calls: list[Callable[[torch.Tensor], torch.Tensor]] = [model.stem]
    for stage in model.stages:
        for block in stage:
            calls += [block.forward_mixer, block.forward_ffn]
    calls.append(model.head)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(len(calls) + 1)]
        events[0].record()
        for call, event in zip(calls, events[1:]):
            x = call(x)
            event.record()
        events[-1].synchronize()
        return [a.elapsed_time(b) for a, b in zip(events, events[1:])]
    times = []
    for call in calls:
        t0 = time.perf_counter()
        x = call(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _stage_combos(space: SearchSpace, s: int) -> list[dict[str, Any]]:
    """Every choice of one stage's values (with the next stage's width, which its last block projects to)."""
    head_key = "head_dims" if "head_dims" in space.choices else "heads"
    nexts = stage_options(space, "widths", s + 1) if s < NUM_STAGES - 1 else (None,)
    return [dict(c=c, heads=h, kernel=k, window=w, ratio=r, ffn_kernel=m, c_next=n)
            for c in stage_options(space, "widths", s)
            for h in sorted({snap_heads(head_key, c, v) for v in stage_options(space, head_key, s)})
            for k in stage_options(space, "kernels", s) for w in stage_options(space, "windows", s)
            for r in stage_options(space, "ffn_ratios", s) for m in stage_options(space, "ffn_kernels", s)
            for n in nexts]


def _combo_keys(s: int, combo: dict[str, Any], side: int) -> set[str]:
    c, hidden = combo["c"], int(combo["c"] * combo["ratio"])
    block = BlockPlan(s, 0, c, c, 1, combo["kernel"], combo["heads"], combo["window"], hidden, combo["ffn_kernel"], 0.0)
    keys = {mixer_key(block, side), ffn_key(block, side)}
    if combo["c_next"] is not None:
        keys.add(ffn_key(block._replace(c_out=combo["c_next"], stride=2), side))
    return keys


def carrier_configs(space: SearchSpace, res: int | None = None, in_chans: int = 3,
                    num_classes: int = 1000) -> list[FATConfig]:
    """Networks of depth 2 per stage that together hold every part of the space, picked greedily (few of them)."""
    res = res or space.resolution
    sizes = stage_output_sizes(res, res)
    needed = {p.key for p in space_parts(space, res, in_chans, num_classes)}
    combos = [[(cb, _combo_keys(s, cb, sizes[s][0])) for cb in _stage_combos(space, s)] for s in range(NUM_STAGES)]
    io_keys = {p.key: p.stage for p in space_parts(space, res, in_chans, num_classes) if p.stage in (-1, NUM_STAGES)}
    carriers = []
    while needed:
        # backwards: the most new parts stages s.. can add when stage s has width c; then pick forwards
        best: list[dict[Any, tuple[int, dict[str, Any] | None]]] = [{} for _ in range(NUM_STAGES + 1)]
        best[NUM_STAGES] = {None: (0, None)}
        for s in reversed(range(NUM_STAGES)):
            for cb, keys in combos[s]:
                gain = len(keys & needed) + best[s + 1].get(cb["c_next"], (0, None))[0]
                gain += sum(1 for k, st in io_keys.items() if k in needed and (
                    (st == -1 and s == 0 and f" c={cb['c']} " in k) or
                    (st == NUM_STAGES and s == NUM_STAGES - 1 and k.startswith(f"head c={cb['c']} "))))
                if gain > best[s].get(cb["c"], (-1, None))[0]:
                    best[s][cb["c"]] = (gain, cb)
        picked = [max(best[0].values(), key=lambda g: g[0])[1]]
        for s in range(1, NUM_STAGES):
            picked.append(best[s][picked[-1]["c_next"]][1])
        cfg = FATConfig(widths=[cb["c"] for cb in picked], depths=[2] * NUM_STAGES,
                        heads=[cb["heads"] for cb in picked], kernels=[cb["kernel"] for cb in picked],
                        windows=[cb["window"] for cb in picked], ffn_ratios=[cb["ratio"] for cb in picked],
                        ffn_kernels=[cb["ffn_kernel"] for cb in picked], in_chans=in_chans, num_classes=num_classes)
        keys = {p.key for p in config_parts(cfg, res)}
        if not keys & needed:
            raise RuntimeError(f"carrier_configs: parts no carrier holds: {sorted(needed)[:3]}")
        needed -= keys
        carriers.append(cfg)
    return carriers


def _calibrate(space: SearchSpace, timer: RelativeTimer, table: dict[str, float], res: int, in_chans: int,
               num_classes: int) -> list[dict[str, Any]]:
    """Whole networks (seeded draws from the space) measured against the sum of their parts."""
    rows = []
    for cfg in sample_configs(space, CALIBRATION_NETWORKS, CALIBRATION_SEED):
        cfg = cfg.replace(in_chans=in_chans, num_classes=num_classes)
        summed = sum(table[p.key] for p in config_parts(cfg, res))
        torch.manual_seed(0)
        measured = timer.ratio(FAT(cfg), (in_chans, res, res), timer.settings.calibration_repeats)
        rows.append(dict(config=cfg.to_dict(), summed=summed, measured=measured))
    return rows


def library_versions(runtime: str) -> dict[str, str]:
    versions = dict(fatnas=__version__, torch=torch.__version__, python=platform.python_version())
    if runtime == "onnxruntime":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    if torch.version.cuda:
        versions["cuda"] = torch.version.cuda
    return versions
