"""Proxy trainer throughput: the default proxy against a plain NCHW fp32 eager loop, and against matmul.

For each network, resolution and thread count, in one process and side by side: the fp32
GFLOP/s of a 2048 x 2048 matmul with the same threads; images/s of a plain loop (NCHW, batch
32, AdamW, no kernel cropping, images prepared up front); images/s of `train_proxy` with the
default ProxySettings at that resolution (training time only; its validation is timed apart).
The proxy's achieved GFLOP/s counts a training step as 3 x the forward FLOPs of the network it
trains (fvcore convention, analytic, at that resolution) and 2 FLOPs per multiply-add, as matmul
GFLOP/s do. Medians over `--rounds`; saved to bench/results/trainer_bench.csv.

    python bench/trainer_bench.py --models fat_b0 fat_b2 --res 28 56 64 --threads 1 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fatnas.estimate.cost import analytic_cost
from fatnas.estimate.data import DataSplit, load_dataset, prepare_images
from fatnas.estimate.liveness import proxy_config
from fatnas.estimate.proxy import ProxySettings, train_proxy
from fatnas.model.network import FAT
from fatnas.model.variants import resolve_config

PLAIN_BATCH = 32
MATMUL_SIZE = 2048


def matmul_gflops(repeats: int = 5, size: int = MATMUL_SIZE) -> float:
    """fp32 GFLOP/s of a size x size matmul with torch's current threads (2 FLOPs per multiply-add)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * size ** 3 / (time.perf_counter() - start) / 1e9


def plain_loop(cfg, data: DataSplit, res: int, images: int) -> float:
    """Images/s of the plainest loop: NCHW fp32, batch 32, AdamW, images prepared up front."""
    torch.manual_seed(0)
    model = FAT(cfg.replace(in_chans=data.in_chans, num_classes=data.num_classes))
    mean, std = data.normalization()
    x = prepare_images(data.train_x[:images], mean, std, res)
    y = data.train_y[:images]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    model.train()
    steps = images // PLAIN_BATCH
    start = time.perf_counter()
    for step in range(steps):
        batch = slice(step * PLAIN_BATCH, (step + 1) * PLAIN_BATCH)
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * PLAIN_BATCH / (time.perf_counter() - start)


def train_gflop_per_image(cfg, data: DataSplit, res: int) -> float:
    """GFLOP of one training image: 3 x forward multiply-adds of the trained network, 2 FLOPs each."""
    network = proxy_config(cfg, res).replace(in_chans=data.in_chans, num_classes=data.num_classes)
    return 3 * 2 * analytic_cost(network, res).flops / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fat_b0", "fat_b2"])
    parser.add_argument("--res", type=int, nargs="+", default=[28, 56, 64])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=1024, help="training images per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_bench.csv")
    args = parser.parse_args()
    data = load_dataset()
    default = ProxySettings()
    rows = []
    cases = [(m, r, t) for t in args.threads for m in args.models for r in args.res]
    for model, res, threads in tqdm(cases, desc="trainer bench"):
        torch.set_num_threads(threads)
        cfg = resolve_config(model)
        settings = default.replace(res=res, train_images=args.images, val_images=100)
        plain_loop(cfg, data, res, 2 * PLAIN_BATCH)  # warm-up
        matmul, plain, proxy = [], [], []
        for _ in range(args.rounds):
            matmul.append(matmul_gflops())
            plain.append(plain_loop(cfg, data, res, args.images))
            proxy.append(train_proxy(cfg, data, settings).images_per_second)
        gflop = train_gflop_per_image(cfg, data, res)
        proxy_img_s, matmul_rate = statistics.median(proxy), statistics.median(matmul)
        rows.append(dict(model=model, res=res, threads=threads, batch=default.batch_size,
                         plain_img_s=statistics.median(plain), proxy_img_s=proxy_img_s,
                         speedup=proxy_img_s / statistics.median(plain), matmul_gflops=matmul_rate,
                         proxy_gflops=proxy_img_s * gflop, pct_of_matmul=100 * proxy_img_s * gflop / matmul_rate))
    save_table(pd.DataFrame(rows), args.out, digits=2)


if __name__ == "__main__":
    main()
