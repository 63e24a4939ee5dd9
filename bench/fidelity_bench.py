"""Fidelity study of issue 14: a reference that can rank (2 seeds per network) and every cheap estimator against it.

Each phase keeps its run folder under bench/results/ (run.yaml, fidelity.csv, correlations.csv,
reliability.csv, seed_spread.csv, fidelity.html, configs/): fidelity.csv grows by a few rows per
finished job, so commit it as it grows, and a later session continues with --resume.

    python bench/fidelity_bench.py --phase pilot             # 8 networks of the default space within 2 GFLOPs
    python bench/fidelity_bench.py --phase pilot --resume    # continue a stopped pilot
    python bench/fidelity_bench.py --phase study             # 32 networks + fat_b0 and fat_b1
    python bench/fidelity_bench.py --phase study --analyse   # tables of the networks finished so far
    python bench/fidelity_bench.py --phase study --resume --low res=28,train_images=3072   # add a low fidelity

Both train the default proxy (the low fidelity), score the zero-cost proxies and baselines, and
train the `reference` preset of fatnas.study.fidelity with 2 seeds per network. The pilot's verdict is
printed at the end: its reference must reach a seed-to-seed tau >= 0.5 with |tau with #params| <= 0.8;
if not, try another reference under a new run id (e.g. --high reference,epochs=4 --run-id
fidelity_pilot_e4, or --classes 0,2,4,6).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from common import RESULTS

from fatnas.runs.store import open_run
from fatnas.study.fidelity import StudySettings, analyse

ROOT = Path(__file__).resolve().parent.parent
PHASES = {"pilot": dict(archs=8, references=False), "study": dict(archs=32, references=True)}
TARGET_SEED_TAU, TARGET_PARAMS_TAU = 0.5, 0.8
# issue 14's targets for the default proxy: tau, lower bound, partial tau, margin over #params, cost
PROXY_TARGETS = dict(kendall_tau=0.45, tau_low=0.25, partial_tau=0.15, minus_params=0.1)
MAX_COST_RATIO = 1 / 8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=tuple(PHASES), required=True)
    parser.add_argument("--resume", action="store_true", help="continue the phase's study in its run folder")
    parser.add_argument("--analyse", action="store_true",
                        help="train nothing: analyse the networks finished so far (a study still running, or stopped)")
    parser.add_argument("--workers", type=int, default=2, help="trainings at once (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the trainings run (default cpu)")
    parser.add_argument("--run-id", default=None, help="run folder name (default fidelity_<phase>)")
    parser.add_argument("--root", type=Path, default=RESULTS, help="folder of the run folders (default bench/results)")
    parser.add_argument("--archs", type=int, default=None, help="sampled networks (default: pilot 8, study 32)")
    parser.add_argument("--high", default="reference", help="the reference fidelity (default: the reference preset)")
    parser.add_argument("--high-seeds", type=int, default=None, help="reference seeds per network (default 2)")
    parser.add_argument("--low", action="append", default=None, help="low fidelities (default: default)")
    parser.add_argument("--classes", default=None, help="e.g. 0,2,4,6: Fashion-MNIST's upper-body classes only")
    parser.add_argument("--space", default="fat")
    parser.add_argument("--budget", default="2GFLOPs")
    return parser.parse_args()


def study_command(args: argparse.Namespace, run_id: str) -> list[str]:
    """The cli.py fidelity command of the phase (or of its resumption)."""
    command = [sys.executable, str(ROOT / "cli.py"), "fidelity", "--workers", str(args.workers), "--quiet"]
    if args.resume:  # --low on a resumption adds low fidelities to the study
        added = [item for low in args.low or [] for item in ("--low", low)]
        seeds = ["--high-seeds", str(args.high_seeds)] if args.high_seeds else []
        return command + ["--resume", run_id] + seeds + added
    phase = PHASES[args.phase]
    command += ["--run-id", run_id, "--space", args.space, "--budget", args.budget, "--threads", str(args.threads),
                "--device", args.device,
                "--archs", str(args.archs or phase["archs"]), "--high", args.high,
                "--high-seeds", str(args.high_seeds or 2)]
    for low in args.low or ["default"]:
        command += ["--low", low]
    if args.classes:
        command += ["--classes", args.classes]
    return command + ([] if phase["references"] else ["--no-references"])


def analyse_so_far(root: Path, run_id: str) -> None:
    """Write the tables and report of the networks whose trainings have all finished."""
    run = open_run(run_id, root=root)
    settings = StudySettings.from_meta(run.read_meta())
    analyse(run, settings, finished_only=True)


def reference_verdict(reliable: pd.DataFrame) -> str:
    """Whether the chosen reference can rank: its seed-to-seed tau and its tau with #params against the targets."""
    if reliable.empty or not reliable["chosen"].any():
        return "verdict: no reference rows yet"
    row = reliable[reliable["chosen"]].iloc[0]
    failed = []
    if not row["seed_tau"] >= TARGET_SEED_TAU:
        failed.append(f"seed-to-seed tau {row['seed_tau']:.3f} < {TARGET_SEED_TAU}")
    if not abs(row["params_tau"]) <= TARGET_PARAMS_TAU:
        failed.append(f"|tau with #params| {abs(row['params_tau']):.3f} > {TARGET_PARAMS_TAU} (a size ranking)")
    head = f"reference {row['reference']} over {row['archs']} networks"
    if failed:
        return f"verdict: FAIL, {head}: {'; '.join(failed)}"
    return (f"verdict: PASS, {head}: seed-to-seed tau {row['seed_tau']:.3f} [{row['seed_tau_low']:.3f}, "
            f"{row['seed_tau_high']:.3f}], tau with #params {row['params_tau']:.3f}, "
            f"noise ceiling {row['ceiling']:.3f}")


def proxy_targets(summary: pd.DataFrame, estimator: str) -> list[str]:
    """Issue 14's targets for one estimator, each with its value and gap."""
    rows = summary[summary["estimator"] == estimator]
    if rows.empty:
        return [f"{estimator}: no rows yet"]
    row = rows.iloc[0]
    lines = [f"{estimator} {column} {row[column]:.3f} (target >= {target}: {_gap(row[column], target)})"
             for column, target in PROXY_TARGETS.items()]
    met = row["cost_vs_high"] <= MAX_COST_RATIO
    lines.append(f"{estimator} cost_vs_high {row['cost_vs_high']:.3f} (target <= {MAX_COST_RATIO:.3f}: "
                 f"{'met' if met else 'missed'})")
    return lines


def _gap(value: float, target: float) -> str:
    if pd.isna(value):
        return "unknown"
    return "met" if value >= target else f"gap {target - value:.3f}"


def main() -> None:
    args = parse_args()
    run_id = args.run_id or f"fidelity_{args.phase}"
    args.root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FATNAS_RUNS_DIR=str(args.root.resolve()))
    if args.analyse:
        analyse_so_far(args.root, run_id)
    else:
        study = subprocess.run(study_command(args, run_id), cwd=ROOT, env=env)
        if study.returncode:  # the CLI has said why in one line (e.g. the phase's folder exists: --resume)
            sys.exit(study.returncode)
    folder = args.root / run_id
    reliable = pd.read_csv(folder / "reliability.csv")
    summary = pd.read_csv(folder / "correlations.csv")
    print(f"\n{args.phase} {run_id}: {reference_verdict(reliable)}")
    lows = summary[(summary["kind"] == "train") & (summary["metric"] == "accuracy")]["estimator"].tolist()
    for line in proxy_targets(summary, "default:accuracy" if "default:accuracy" in lows or not lows else lows[0]):
        print(f"  {line}")
    if not summary.empty:
        best = summary.loc[summary["kendall_tau"].idxmax()]
        print(f"  best estimator: {best['estimator']} tau {best['kendall_tau']:.3f} [{best['tau_low']:.3f}, "
              f"{best['tau_high']:.3f}], partial {best['partial_tau']:.3f}")
    print(f"files in {folder}; commit them with: git add {folder}")


if __name__ == "__main__":
    main()
