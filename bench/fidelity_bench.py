"""Proxy fidelity study of the default space: which cheap proxy ranks architectures like longer training.

Runs `cli.py fidelity` (30 architectures from search_spaces/fat.yaml within 2 GFLOPs, plus the
published FATs that fit) with the candidate low fidelities below, all of about the default
search's cost per trial except `train_images=2048` (twice it) and `res=40` (1.3x), against an
8x longer high fidelity, then copies the study's tables to bench/results/fidelity_*.csv. The run folder stays
in runs/ (resume a killed study with `--resume ID`).

    python bench/fidelity_bench.py --workers 2
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from common import RESULTS

ROOT = Path(__file__).resolve().parent.parent
# "default" is the search's proxy (2 checkpoints of 1,000 validation images); the others name
# every value that differs from it (eval_every=4,val_images=500 was the default before this study)
LOWS = ("eval_every=4,val_images=500", "eval_every=1,val_images=2000", "res=40,train_images=768,eval_every=4,val_images=500",
        "train_images=2048,eval_every=4,val_images=500", "default")
HIGH = "train_images=8192,eval_every=1,val_images=2000"
# run file -> saved copy in bench/results/
TABLES = {"fidelity.csv": "fidelity_study.csv", "correlations.csv": "fidelity_correlations.csv",
          "seed_spread.csv": "fidelity_seed_spread.csv"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run-id", default="fidelity-bench")
    parser.add_argument("--resume", action="store_true", help="continue the study in runs/<run-id>")
    args = parser.parse_args()
    command = [sys.executable, str(ROOT / "cli.py"), "fidelity", "--workers", str(args.workers)]
    if args.resume:
        command += ["--resume", args.run_id]
    else:
        command += ["--run-id", args.run_id, "--archs", str(args.archs), "--high", HIGH]
        for low in LOWS:
            command += ["--low", low]
    subprocess.run(command, check=True, cwd=ROOT)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, copy in TABLES.items():
        shutil.copyfile(ROOT / "runs" / args.run_id / name, RESULTS / copy)
    print(f"saved {', '.join(str(RESULTS / copy) for copy in TABLES.values())}")


if __name__ == "__main__":
    main()
