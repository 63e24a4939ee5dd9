"""Measured latency and memory: forward passes timed in torch or ONNX Runtime, interleaved with a fixed
reference network (fat_b0) so host drift cancels out, and the peak memory of one pass.
"""
from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ...errors import FatnasError
from ...model.config import FATConfig
from ...model.network import FASA, FAT

# ---------------------------------------------------------------- latency and memory

@dataclass(frozen=True)
class LatencyStats:
    """Forward-pass times in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    cv: float  # standard deviation / mean
    device: str
    batch_size: int
    res: int
    threads: int
    repeats: int
    samples_ms: list[float] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples_ms")
        return d


def _quantile(sorted_values: list[float], q: float) -> float:
    pos = q * (len(sorted_values) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU threads set to `threads` (None: as they are) inside the block, restored after it."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_latency(model: nn.Module, *, res: int = 224, in_chans: int = 3, batch_size: int = 1,
                    device: str = "cpu", threads: int | None = None, warmup: int = 5,
                    repeats: int = 20, channels_last: bool = False, runtime: str = "torch") -> LatencyStats:
    """Time the forward pass (under inference_mode, or in ONNX Runtime); see `pass_timer`."""
    dev = torch.device(device)
    with torch_threads(threads):
        times = _forward_times(model, dev, res, in_chans, batch_size, warmup, repeats, channels_last, runtime)
        used_threads = torch.get_num_threads()
    return latency_stats(times, device=str(dev), batch_size=batch_size, res=res, threads=used_threads)


def _forward_times(model: nn.Module, dev: torch.device, res: int, in_chans: int, batch_size: int,
                   warmup: int, repeats: int, channels_last: bool, runtime: str = "torch") -> list[float]:
    """Milliseconds of `repeats` timed forward passes after `warmup` untimed ones."""
    one_pass = pass_timer(model, torch.randn(batch_size, in_chans, res, res), dev, runtime=runtime,
                          channels_last=channels_last)
    with torch.inference_mode():
        for _ in range(warmup):
            one_pass()
        return [one_pass() for _ in range(repeats)]


RUNTIMES = ("torch", "onnxruntime")


def pass_timer(model: nn.Module, example: torch.Tensor, dev: torch.device | str = "cpu", *, runtime: str = "torch",
               threads: int | None = None, channels_last: bool = False) -> Callable[[], float]:
    """A function that runs one forward pass of `model` on `example` and returns its milliseconds.

    torch (call it under inference_mode, with torch's threads set): CUDA passes are timed with
    CUDA events after a synchronisation, CPU passes with perf_counter. onnxruntime: the model is
    exported to ONNX once, and each call times one synchronous `session.run` on `threads` threads.
    """
    dev = torch.device(dev)
    if runtime == "onnxruntime":
        return _onnxruntime_timer(model, example, dev, threads)
    if runtime != "torch":
        raise FatnasError(f"unknown latency runtime {runtime!r}; accepted: {', '.join(RUNTIMES)}")
    model = model.eval().to(dev)
    x = example.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if dev.type == "cuda":
        def cuda_pass() -> float:
            torch.cuda.synchronize(dev)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        return cuda_pass

    def cpu_pass() -> float:
        t0 = time.perf_counter()
        model(x)
        return (time.perf_counter() - t0) * 1e3
    return cpu_pass


def _onnxruntime_timer(model: nn.Module, example: torch.Tensor, dev: torch.device,
                       threads: int | None) -> Callable[[], float]:
    from ...model.deploy import INPUT_NAME, onnx_bytes, onnx_session

    session = onnx_session(onnx_bytes(model.eval().cpu(), example.cpu(), fast=True),
                           threads=threads if threads is not None else torch.get_num_threads(), device=dev.type)
    feed = {INPUT_NAME: example.cpu().numpy()}

    def ort_pass() -> float:
        t0 = time.perf_counter()
        session.run(None, feed)
        return (time.perf_counter() - t0) * 1e3
    return ort_pass


def latency_stats(times: list[float], *, device: str, batch_size: int, res: int, threads: int) -> LatencyStats:
    """Median, p10, p90, mean and CV of a list of pass times in milliseconds."""
    ordered = sorted(times)
    mean = statistics.fmean(times)
    return LatencyStats(
        median_ms=statistics.median(times), p10_ms=_quantile(ordered, 0.1), p90_ms=_quantile(ordered, 0.9),
        mean_ms=mean, cv=statistics.pstdev(times) / mean if mean else 0.0, device=device,
        batch_size=batch_size, res=res, threads=threads, repeats=len(times), samples_ms=times,
    )


# ---------------------------------------------------------------- stable timing against a reference

@dataclass(frozen=True)
class RelativeLatency:
    """A candidate timed alternately with a fixed reference network, so host drift hits both alike.

    `ratio` is the median of the per-round ratios candidate / reference; `latency_ms`, the
    objective, is that ratio times the reference's median over every round of the clock so far.
    """

    candidate: LatencyStats
    reference: LatencyStats
    ratio: float
    ratio_cv: float
    reference_ms: float  # the reference's median over the clock's whole life (this process)

    @property
    def latency_ms(self) -> float:
        return self.ratio * self.reference_ms

    def to_dict(self) -> dict[str, Any]:
        return dict(latency_ms=self.latency_ms, ratio=self.ratio, ratio_cv=self.ratio_cv,
                    reference_ms=self.reference_ms, candidate=self.candidate.to_dict(),
                    reference=self.reference.to_dict())


class ReferenceClock:
    """Times candidates interleaved with one fixed reference network, in this process.

    Each round runs the reference once and the candidate once (the order alternates from round
    to round); a slower host slows both, and the ratio stays put. Every reference pass is kept,
    so the ms figure of each candidate is its ratio times the reference's median over the run.
    """

    def __init__(self, reference: nn.Module, *, res: int = 224, in_chans: int = 3, batch_size: int = 1,
                 device: str = "cpu", threads: int | None = None, warmup: int = 5, repeats: int = 20,
                 runtime: str = "torch") -> None:
        self.dev = torch.device(device)
        self.res, self.in_chans, self.batch_size, self.threads = res, in_chans, batch_size, threads
        self.warmup, self.repeats, self.runtime = warmup, repeats, runtime
        self.reference = self.timer(reference)
        self.reference_samples: list[float] = []

    def timer(self, model: nn.Module, example: torch.Tensor | None = None) -> Callable[[], float]:
        """A pass timer of `model` (on `example`, by default a batch of this clock's inputs) in this clock's runtime."""
        if example is None:
            example = torch.randn(self.batch_size, self.in_chans, self.res, self.res)
        return pass_timer(model, example, self.dev, runtime=self.runtime, threads=self.threads)

    @property
    def reference_ms(self) -> float:
        """The reference's median over every round so far (nan before the first)."""
        return statistics.median(self.reference_samples) if self.reference_samples else math.nan

    def measure_reference(self) -> RelativeLatency:
        """The reference itself: rounds of it alone (kept with its other passes), ratio 1 by definition. Timing it
        against itself would only add noise, and on a loaded host a lot (measured 1.55 beside two busy processes),
        while every figure of a run is read against it."""
        with torch_threads(self.threads), torch.inference_mode():
            for _ in range(self.warmup):
                self.reference()
            times = [self.reference() for _ in range(self.repeats)]
            used_threads = torch.get_num_threads()
        self.reference_samples += times
        stats = latency_stats(times, device=str(self.dev), batch_size=self.batch_size, res=self.res,
                              threads=used_threads)
        return RelativeLatency(candidate=stats, reference=stats, ratio=1.0, ratio_cv=0.0,
                               reference_ms=self.reference_ms)

    def measure(self, model: nn.Module) -> RelativeLatency:
        """Interleaved rounds of reference and `model` after warm-up; see the class docstring."""
        candidate = self.timer(model)
        with torch_threads(self.threads), torch.inference_mode():
            for _ in range(self.warmup):
                self.reference(), candidate()
            ref_times, cand_times = [], []
            for i in range(self.repeats):
                if i % 2:
                    cand_times.append(candidate())
                    ref_times.append(self.reference())
                else:
                    ref_times.append(self.reference())
                    cand_times.append(candidate())
            used_threads = torch.get_num_threads()
        self.reference_samples += ref_times
        ratios = [c / r for c, r in zip(cand_times, ref_times)]
        settings = dict(device=str(self.dev), batch_size=self.batch_size, res=self.res, threads=used_threads)
        mean_ratio = statistics.fmean(ratios)
        return RelativeLatency(candidate=latency_stats(cand_times, **settings),
                               reference=latency_stats(ref_times, **settings), ratio=statistics.median(ratios),
                               ratio_cv=statistics.pstdev(ratios) / mean_ratio, reference_ms=self.reference_ms)


def peak_memory_bytes(model: nn.Module, *, res: int = 224, in_chans: int = 3, batch_size: int = 1,
                      device: str = "cpu") -> tuple[int, str]:
    """Peak memory of one inference forward pass and how it was obtained.

    CUDA: measured, `torch.cuda.max_memory_allocated` over the pass (weights included).
    CPU: an estimate, weights plus the largest live set seen at any leaf layer (its input,
    its output and the attention map of that block), tracked with forward hooks.
    """
    dev = torch.device(device)
    model = model.eval().to(dev)
    x = torch.randn(batch_size, in_chans, res, res, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize(dev)
        return int(torch.cuda.max_memory_allocated(dev)), "measured (CUDA max allocated)"
    weights = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    peak = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal peak
        live = sum(t.numel() * t.element_size() for t in inputs if isinstance(t, torch.Tensor))
        live += output.numel() * output.element_size()
        peak = max(peak, live + _attention_bytes(module, inputs))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    handles += [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, FASA)]
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return weights + peak, "estimate (weights + largest leaf input/output + attention map)"


def _attention_bytes(module: nn.Module, inputs: tuple) -> int:
    """Bytes of the attention map a FASA module builds: batch * heads * N * M floats."""
    if not isinstance(module, FASA):
        return 0
    y = inputs[0]
    n = y.shape[-2] * y.shape[-1]
    window = module.window
    m = -(-y.shape[-2] // window) * -(-y.shape[-1] // window)
    return y.shape[0] * module.heads * n * m * y.element_size()



REFERENCE_CONFIG = dict(widths=[32, 80, 160, 256], depths=[2, 2, 6, 2], heads=[2, 5, 10, 16],
                        kernels=[3, 5, 7, 9], windows=[8, 4, 2, 1], ffn_ratios=4.0, ffn_kernels=5)  # fat_b0


def reference_config(in_chans: int = 3) -> FATConfig:
    return FATConfig.from_dict(dict(REFERENCE_CONFIG, in_chans=in_chans))


def reference_network(in_chans: int = 3) -> FAT:
    """The network every latency here is timed against: fat_b0 with seed-0 weights (the global RNG untouched)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return FAT(reference_config(in_chans))



def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model and logical core count."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} logical cores)"


MEASURED_METHOD = "interleaved with fat_b0 in the same process; ms = median ratio x fat_b0's median over the run"
_CLOCKS: dict[tuple, ReferenceClock] = {}


def measured_latency(cfg: FATConfig, *, res: int, device: str = "cpu", threads: int | None = None,
                     warmup: int = 5, repeats: int = 9) -> RelativeLatency:
    """A candidate timed against this process's reference clock (fat_b0 at the same settings): its ratio to
    fat_b0, and ms on this host (the ratio times fat_b0's median over the clock's life so far)."""
    key = (res, cfg.in_chans, device, threads, warmup, repeats)
    if key not in _CLOCKS:
        _CLOCKS[key] = ReferenceClock(reference_network(cfg.in_chans), res=res, in_chans=cfg.in_chans, device=device,
                                      threads=threads, warmup=warmup, repeats=repeats)
    if replace(cfg, drop_path_rate=0.0) == reference_config(cfg.in_chans):  # fat_b0 (drop path: off)
        return _CLOCKS[key].measure_reference()
    return _CLOCKS[key].measure(FAT(cfg))


def measured_latency_ms(cfg: FATConfig, *, res: int, device: str = "cpu", threads: int | None = None,
                        warmup: int = 5, repeats: int = 9) -> float:
    """`measured_latency`'s ms on this host."""
    return measured_latency(cfg, res=res, device=device, threads=threads, warmup=warmup, repeats=repeats).latency_ms
