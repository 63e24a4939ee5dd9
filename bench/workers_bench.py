"""Trained trials per minute of one search: 1 against 2 worker processes, and Ray with 1 against 2 nodes.

Each row runs one search to the same target in a temporary runs folder (random sampler, seed 0,
no references, 1 torch thread per trial) and divides the trained trials by the wall time
(process start to exit, data loading and start-up included):
- optuna: `fatnas search --workers N --threads 1`;
- ray: `fatnas search --backend ray --ray-address A --cpus-per-trial 1` on a cluster of N nodes
  of 1 CPU each, all on 127.0.0.1 (`tests/ray_nodes.py`; cluster start-up not counted).
Saves bench/results/workers_bench.csv.

    python bench/workers_bench.py --workers 1 2 --ray-nodes 1 2 --trials 12 --proxy-images 1024
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

from fatnas.runs.store import open_run  # noqa: E402
from tests.ray_nodes import LocalCluster  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def search_rate(runs: Path, run_id: str, extra: list[str], args: argparse.Namespace) -> dict:
    """Run one search to the target; its trained trials, wall time and trials per minute."""
    command = [sys.executable, str(ROOT / "cli.py"), "search", "--budget", args.budget, "--space", args.space,
               "--trials", str(args.trials), "--threads", "1", "--sampler", "random", "--no-references", "--quiet",
               "--run-id", run_id, "--proxy-images", str(args.proxy_images), *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, FATNAS_RUNS_DIR=str(runs)))
    wall = time.perf_counter() - start
    trials = open_run(run_id, root=runs).trials()
    trained = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    return dict(threads_each=1, trained=len(trained), wall_s=wall, trained_per_min=60 * len(trained) / wall,
                cpus=os.cpu_count(), by_worker=" ".join(str(n) for n in trained["worker"].value_counts().sort_index()))


def run_workers(runs: Path, workers: int, args: argparse.Namespace) -> dict:
    rate = search_rate(runs, f"w{workers}", ["--workers", str(workers)], args)
    return dict(backend="optuna", workers=workers, **rate)


def run_ray_nodes(runs: Path, nodes: int, args: argparse.Namespace) -> dict:
    with LocalCluster(workers=nodes - 1, cpus=1) as cluster:
        extra = ["--backend", "ray", "--ray-address", cluster.address, "--cpus-per-trial", "1"]
        return dict(backend="ray", workers=nodes, **search_rate(runs, f"ray{nodes}", extra, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="optuna worker processes")
    parser.add_argument("--ray-nodes", nargs="*", type=int, default=[1, 2], help="Ray nodes of 1 CPU each")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--space", default="fat")
    parser.add_argument("--proxy-images", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=RESULTS / "workers_bench.csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_workers(Path(tmp), n, args) for n in args.workers]
        rows += [run_ray_nodes(Path(tmp), n, args) for n in args.ray_nodes]
    table = pd.DataFrame(rows)
    save_table(table, args.out, digits=2)


if __name__ == "__main__":
    main()
