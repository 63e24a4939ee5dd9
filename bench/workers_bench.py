"""Trained trials per minute of one search with 1 and with 2 worker processes (1 torch thread each).

Each row runs `fatnas search --workers N --threads 1` to the same target in a temporary runs
folder (random sampler, seed 0, no references) and divides the trained trials by the wall time
(process start to exit, data loading and start-up included). Saves bench/results/workers_bench.csv.

    python bench/workers_bench.py --workers 1 2 --trials 12 --proxy-images 1024
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, save_table  # noqa: E402

from fatnas.store import open_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_one(runs: Path, workers: int, args: argparse.Namespace) -> dict:
    run_id = f"w{workers}"
    command = [sys.executable, str(ROOT / "cli.py"), "search", "--budget", args.budget, "--space", args.space,
               "--trials", str(args.trials), "--workers", str(workers), "--threads", "1", "--sampler", "random",
               "--no-references", "--quiet", "--run-id", run_id, "--proxy-images", str(args.proxy_images)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, FATNAS_RUNS_DIR=str(runs)))
    wall = time.perf_counter() - start
    trials = open_run(run_id, root=runs).trials()
    trained = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    return dict(workers=workers, threads_each=1, trained=len(trained), wall_s=wall,
                trained_per_min=60 * len(trained) / wall, cpus=os.cpu_count(),
                by_worker=" ".join(str(n) for n in trained["worker"].value_counts().sort_index()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--space", default="fat")
    parser.add_argument("--proxy-images", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=RESULTS / "workers_bench.csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = pd.DataFrame([run_one(Path(tmp), n, args) for n in args.workers])
    save_table(table, args.out, digits=2)


if __name__ == "__main__":
    main()
