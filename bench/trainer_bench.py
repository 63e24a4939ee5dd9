"""Proxy trainer throughput against a bare hand-written training loop on the same network and data.

For each network, resolution and thread count, the two loops run alternately (`--rounds` times
each, side by side in one process) on the same seeded network (with the trainer's cropping of
kernels that only see padding) and the same training images, held as tensors. Both count
training steps only: the trainer's validation passes are timed apart and left out. The table
gives median images/s of each and their ratio; saved to bench/results/trainer_bench.csv.

    python bench/trainer_bench.py --models fat_b0 --res 28 56 --threads 1 2
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fatnas.data import DataSplit, load_dataset, prepare_images
from fatnas.model import FAT
from fatnas.proxy import ProxySettings, crop_oversized_kernels, train_proxy
from fatnas.variants import resolve_config



def bare_loop(cfg, data: DataSplit, settings: ProxySettings) -> float:
    """Images/s of the plainest loop: normalized images prepared up front, AdamW, no schedule, no checks."""
    torch.manual_seed(settings.seed)
    model = FAT(cfg.replace(in_chans=data.in_chans, num_classes=data.num_classes))
    crop_oversized_kernels(model, settings.res, data.in_chans)
    mean, std = data.normalization()
    x = prepare_images(data.train_x[:settings.train_images], mean, std, settings.res)
    y = data.train_y[:settings.train_images]
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    batch = settings.batch_size
    steps = len(x) // batch
    start = time.perf_counter()
    for step in range(steps):
        loss = F.cross_entropy(model(x[step * batch:(step + 1) * batch]), y[step * batch:(step + 1) * batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * batch / (time.perf_counter() - start)


def trainer(cfg, data: DataSplit, settings: ProxySettings) -> float:
    """Images/s of fatnas.proxy.train_proxy (training time only; its validation is timed apart)."""
    return train_proxy(cfg, data, settings).images_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fat_b0", "fat_b1"])
    parser.add_argument("--res", type=int, nargs="+", default=[28, 56])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=512, help="training images per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "trainer_bench.csv")
    args = parser.parse_args()
    data = load_dataset()
    rows = []
    cases = [(m, r, t) for m in args.models for r in args.res for t in args.threads]
    for model, res, threads in tqdm(cases, desc="trainer bench"):
        torch.set_num_threads(threads)
        cfg = resolve_config(model)
        settings = ProxySettings(res=res, train_images=args.images, eval_every=1, val_images=100)
        bare_loop(cfg, data, settings.replace(train_images=2 * settings.batch_size))  # warm-up
        bare, ours = [], []
        for _ in range(args.rounds):
            bare.append(bare_loop(cfg, data, settings))
            ours.append(trainer(cfg, data, settings))
        rows.append(dict(model=model, res=res, threads=threads, images=args.images, rounds=args.rounds,
                         bare_img_s=statistics.median(bare), trainer_img_s=statistics.median(ours),
                         ratio=statistics.median(ours) / statistics.median(bare)))
    table = pd.DataFrame(rows)
    save_table(table, args.out, digits=3)


if __name__ == "__main__":
    main()
