"""Stable latency: a candidate timed interleaved with a fixed reference, ten times in one process.

Each measurement is one `ReferenceClock.measure` (rounds of reference and candidate, the order
alternating); the table compares the CV over measurements of the candidate's absolute median
with the CV of its ratio to the reference (the search's latency objective is that ratio times
the reference's median over the run, so it varies exactly as the ratio). Saved to
bench/results/stable_latency_bench.csv (summary) and stable_latency_bench_rows.csv (every measurement).

    python bench/stable_latency_bench.py --candidate fat_b2 --reference fat_b0 --measurements 10 --threads 1 2
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd
import torch
from tqdm import tqdm

from fatnas.estimate.latency import ReferenceClock
from fatnas.model.variants import create_model


def cv_percent(values: list[float]) -> float:
    return 100 * statistics.pstdev(values) / statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", default="fat_b2")
    parser.add_argument("--reference", default="fat_b0")
    parser.add_argument("--measurements", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30, help="rounds per measurement")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "stable_latency_bench.csv")
    args = parser.parse_args()
    torch.manual_seed(0)
    candidate, reference = create_model(args.candidate), create_model(args.reference)
    rows, summary = [], []
    for threads in args.threads:
        clock = ReferenceClock(reference, res=args.res, device=args.device, threads=threads,
                               warmup=args.warmup, repeats=args.repeats)
        runs = [clock.measure(candidate) for _ in tqdm(range(args.measurements), desc=f"{threads} thread(s)")]
        for i, r in enumerate(runs):
            rows.append(dict(threads=threads, measurement=i, candidate_median_ms=r.candidate.median_ms,
                             reference_median_ms=r.reference.median_ms, ratio=r.ratio, ratio_cv_in_run=r.ratio_cv))
        ratios = [r.ratio for r in runs]
        summary.append(dict(
            candidate=args.candidate, reference=args.reference, device=args.device, threads=threads, res=args.res,
            measurements=args.measurements, rounds=args.repeats,
            abs_median_ms=statistics.median(r.candidate.median_ms for r in runs),
            abs_cv_percent=cv_percent([r.candidate.median_ms for r in runs]),
            ref_cv_percent=cv_percent([r.reference.median_ms for r in runs]),
            ratio=statistics.median(ratios), ratio_cv_percent=cv_percent(ratios),
            objective_ms=statistics.median(ratios) * clock.reference_ms))
    pd.DataFrame(rows).to_csv(args.out.with_name(args.out.stem + "_rows.csv"), index=False)
    save_table(pd.DataFrame(summary), args.out, digits=2)


if __name__ == "__main__":
    main()
