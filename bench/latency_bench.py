"""Latency repeatability: measure each model several times in one process, report the spread.

Each measurement is the median of `--repeats` timed forward passes after warm-up; the table
gives, per model, the median of those medians and their coefficient of variation (CV).
Saved to bench/results/latency_bench.csv.

    python bench/latency_bench.py --models fat_b0 fat_b1 --measurements 10 --threads 1 2
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd
from tqdm import tqdm

from fatnas.estimate.latency import measure_latency
from fatnas.model.variants import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fat_b0"])
    parser.add_argument("--measurements", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_bench.csv")
    args = parser.parse_args()
    rows = []
    for name, threads in [(m, t) for m in args.models for t in args.threads]:
        model = create_model(name)
        medians = [measure_latency(model, res=args.res, device=args.device, threads=threads,
                                   warmup=args.warmup, repeats=args.repeats).median_ms
                   for _ in tqdm(range(args.measurements), desc=f"{name}, {threads} thread(s)")]
        mean = statistics.fmean(medians)
        rows.append(dict(model=name, device=args.device, threads=threads, res=args.res,
                         measurements=args.measurements, repeats=args.repeats,
                         median_ms=statistics.median(medians), min_ms=min(medians), max_ms=max(medians),
                         cv_percent=100 * statistics.pstdev(medians) / mean))
    table = pd.DataFrame(rows)
    save_table(table, args.out, digits=2)


if __name__ == "__main__":
    main()
