"""Where a training step goes: the fmnist10 reference recipe's steps profiled, op by op and convolution by shape.

For fat_b0, fat_b2 and the first 3 networks the fidelity studies sample (arch00-02), at 28 and 56 px, one
thread, batch 64, channels last, the recipe's own data and augmentation:

- ops: torch.profiler over `--steps` training steps of the trainer (`plain`: `train_proxy(fast=False)`, the
  trainer before the fast path; `fast`: the default); each op's share of the step's self CPU time.
  Saved to bench/results/trainer_profile_ops.csv; the top `--top` per run are printed.
- convolutions: every distinct convolution shape of the network (kind, channels, kernel after cropping,
  stride, input map), timed forward + backward on its own with its training input shape, as the plain
  module and as the fast path's form; achieved GMAC/s (3 x the forward multiply-adds per step, the fvcore
  convention) beside a 1,024 x 1,024 fp32 matmul's GMAC/s on the same thread, measured in the same run.
  Saved to bench/results/trainer_profile_convs.csv.

    python bench/trainer_profile.py                       # every network, 28 and 56 px, both trainers
    python bench/trainer_profile.py --networks fat_b0 --res 28 --paths fast
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd
import torch
from task_pilot import RECIPES, pilot_networks
from torch import nn
from torch.profiler import ProfilerActivity, profile
from tqdm import tqdm
from trainer_bench import matmul_gflops

from fatnas.estimate.fast_step import FastDepthwiseConv2d, FastPointwiseConv2d, accelerate, conv_input_sizes
from fatnas.estimate.proxy import configure_threads, proxy_trainer
from fatnas.estimate.tasks import load_task
from fatnas.study.fidelity.specs import parse_fidelity

TASK = "fmnist10"
MATMUL_SIZE = 1024
PATHS = {"plain": False, "fast": True}


def op_shares(trainer, steps: int) -> pd.DataFrame:
    """Each op's share of the self CPU time of `steps` training steps, and its calls per step."""
    batches = trainer.train_batches()
    for _ in range(2):
        trainer.train_step(*next(batches))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(*next(batches))
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    rows = [dict(op=e.key, share=e.self_cpu_time_total / total, calls_per_step=e.count / steps,
                 ms_per_step=e.self_cpu_time_total / 1e3 / steps) for e in events]
    return pd.DataFrame(rows).sort_values("share", ascending=False)


def conv_kind(m: nn.Conv2d) -> str:
    if m.groups == m.in_channels == m.out_channels and m.groups > 1:
        return "depthwise"
    return "pointwise" if m.kernel_size == (1, 1) else "dense"


def conv_shapes(trainer, res: int, in_chans: int) -> dict[tuple, tuple[nn.Conv2d, int]]:
    """Distinct convolution shapes of the trainer's network -> (one module of that shape, how many share it)."""
    shapes: dict[tuple, tuple[nn.Conv2d, int]] = {}
    for m, (h, w, oh, ow) in conv_input_sizes(trainer.model, res, in_chans).items():
        crop = getattr(m, "crop", 0)
        key = (conv_kind(m), m.in_channels, m.out_channels, m.kernel_size[0] - 2 * crop, m.stride[0], h, w, oh, ow)
        module, count = shapes.get(key, (m, 0))
        shapes[key] = (module, count + 1)
    return shapes


def time_module(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward of `module` on x (input gradient included)."""
    times = []
    for _ in range(repeats + 1):
        x.grad = None
        start = time.perf_counter()
        module(x).backward(grad)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def fast_form(module: nn.Module) -> str:
    if isinstance(module, FastDepthwiseConv2d):
        return module.method
    return "linear" if isinstance(module, FastPointwiseConv2d) else "onednn"


def conv_rates(name: str, trainer, res: int, in_chans: int, repeats: int, matmul: float) -> list[dict]:
    """One row per convolution shape of the plain trainer's network: plain and fast forms timed side by side."""
    rows = []
    for key, (plain, count) in conv_shapes(trainer, res, in_chans).items():
        kind, c_in, c_out, kernel, stride, h, w, oh, ow = key
        fast = copy.deepcopy(plain)
        accelerate(nn.Sequential(fast), h, c_in)  # maps are square
        x = torch.randn(trainer.batch_size, c_in, h, w).to(memory_format=torch.channels_last).requires_grad_()
        grad = torch.randn(trainer.batch_size, c_out, oh, ow).to(memory_format=torch.channels_last)
        macs = trainer.batch_size * c_out * oh * ow * (c_in // plain.groups) * kernel * kernel
        plain_s, fast_s = time_module(plain, x, grad, repeats), time_module(fast, x, grad, repeats)
        rows.append(dict(network=name, res=res, kind=kind, c_in=c_in, c_out=c_out, kernel=kernel, stride=stride,
                         map=f"{h}x{w}", out=f"{oh}x{ow}", count=count, form=fast_form(fast),
                         plain_ms=1e3 * plain_s, fast_ms=1e3 * fast_s, plain_gmacs=3 * macs / plain_s / 1e9,
                         fast_gmacs=3 * macs / fast_s / 1e9, matmul_gmacs=matmul))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["fat_b0", "fat_b2", "arch00", "arch01", "arch02"])
    parser.add_argument("--res", type=int, nargs="+", default=[28, 56])
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=["plain", "fast"])
    parser.add_argument("--steps", type=int, default=4, help="training steps profiled per run")
    parser.add_argument("--repeats", type=int, default=5, help="timings per convolution shape")
    parser.add_argument("--top", type=int, default=10, help="ops printed per run")
    args = parser.parse_args()
    configure_threads(1)
    networks, data = pilot_networks(3), load_task(TASK)
    matmul = matmul_gflops(repeats=10, size=MATMUL_SIZE) / 2  # multiply-adds, as the convolutions' rates count
    ops, convs = [], []
    for name, res in tqdm([(n, r) for n in args.networks for r in args.res], desc="profiles"):
        settings = parse_fidelity(RECIPES[TASK]).replace(res=res)
        for path in args.paths:
            trainer = proxy_trainer(networks[name], data, settings, fast=PATHS[path])
            shares = op_shares(trainer, args.steps).assign(network=name, res=res, path=path)
            ops.append(shares)
            print(f"\n{name} at {res} px, {path} trainer: {shares['ms_per_step'].sum():.0f} ms per step (profiled)")
            print(shares.head(args.top)[["op", "share", "calls_per_step", "ms_per_step"]].to_string(index=False))
        convs += conv_rates(name, proxy_trainer(networks[name], data, settings, fast=False), res, data.in_chans,
                            args.repeats, matmul)
    columns = ["network", "res", "path", "op", "share", "calls_per_step", "ms_per_step"]
    pd.concat(ops)[columns].to_csv(RESULTS / "trainer_profile_ops.csv", index=False, float_format="%.5g")
    print(f"saved {RESULTS / 'trainer_profile_ops.csv'}")
    print(f"\nmatmul {MATMUL_SIZE}^2 fp32 on this thread: {matmul:.1f} GMAC/s")
    save_table(pd.DataFrame(convs), RESULTS / "trainer_profile_convs.csv", digits=2)


if __name__ == "__main__":
    main()
