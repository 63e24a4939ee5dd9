"""Samplers compared at equal trial counts: hypervolume of the accuracy-latency front, several seeds.

Every (sampler, seed) pair runs the same search (space, budget, proxy) into a temporary run
folder; hypervolumes share one reference point (accuracy 0, 1.1 x the largest latency seen).
Prints the table and saves it to bench/results/sampler_bench.csv.

    python bench/sampler_bench.py --samplers tpe random --seeds 0 1 2 --trials 20

With `--supernet ID` every candidate is scored by that trained supernet instead of proxy-trained (on its
classes, at its resolution), so hundreds of trials are affordable; `--latency-model T.json` models
latency from a table instead of measuring it:

    python bench/sampler_bench.py --supernet sn --classes 0,2,4,6 \
        --latency-model bench/results/latency_table_torch.json \
        --samplers tpe nsga2 random --seeds 0 1 --trials 300 --out bench/results/sampler_bench_supernet.csv

`--feasibility` measures instead how well each sampler learns the budget edge: the share of
its proposals that fit the budget over `--trials` feasible ones, with over-budget draws told as
before (PRUNED, nothing more) and as now (PRUNED with their excess as Optuna constraints). It
trains nothing: each feasible draw is told at once with analytic stand-in objectives (log10
params, maximized, for accuracy, which grows with size; MFLOPs, minimized, for latency), so the
samplers are pulled towards the budget edge as in a real search. Saves sampler_feasibility.csv.

    python bench/sampler_bench.py --feasibility --samplers tpe nsga2 gp random --seeds 0 1 2 --trials 50
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import RESULTS, save_table

from fatnas.estimate.cost import parse_budget
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.space import load_space
from fatnas.runs.store import create_run, hypervolume, pareto_front
from fatnas.search import SearchSettings, run_search
from fatnas.search.api import search_settings
from fatnas.search.optuna_backend import OptunaSearch


def run_one(root: Path, sampler: str, seed: int, args: argparse.Namespace) -> pd.DataFrame:
    settings = search_settings(budget=args.budget, space=args.space, trials=args.trials, sampler=sampler, seed=seed,
                               proxy_images=args.proxy_images, references=False, classes=args.classes,
                               supernet=args.supernet, latency_model=args.latency_model, threads=args.threads)
    run = create_run(f"{sampler}-{seed}", root=root)
    start = time.perf_counter()
    run_search(run, settings, progress=False)
    trials = run.trials().assign(sampler=sampler, seed=seed, wall_s=time.perf_counter() - start)
    return trials


def feasibility_one(root: Path, sampler: str, seed: int, teach: bool, args: argparse.Namespace) -> dict:
    """Proposals a sampler makes to reach `args.trials` feasible ones (nothing trained)."""
    space = load_space(args.space)
    settings = SearchSettings(space=space, budget=parse_budget(args.budget, res=space.resolution),
                              proxy=ProxySettings(seed=seed), trials=args.trials, sampler=sampler, seed=seed,
                              references=False)
    run = create_run(f"{sampler}-{seed}-{'now' if teach else 'before'}", root=root)
    search = OptunaSearch(run, settings, data=None, progress=False,  # a journal file: quicker than SQLite commits
                          storage_url=f"journal://{run.path.resolve() / 'study.log'}")
    search.teach_budget = teach
    start = time.perf_counter()
    for _ in range(args.trials):
        trial, ev = search.sample_feasible()
        search.tell(trial, values=[math.log10(ev.cost.params), ev.cost.flops / 1e6])
    proposals = len(search.trials())
    return dict(sampler=sampler, seed=seed, over_budget_draws="constraints" if teach else "pruned only",
                proposals=proposals, feasible=args.trials, feasible_share=args.trials / proposals,
                wall_s=time.perf_counter() - start)


def feasibility(args: argparse.Namespace) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        rows = [feasibility_one(Path(tmp), sampler, seed, teach, args)
                for sampler in args.samplers for seed in args.seeds for teach in (False, True)]
    return pd.DataFrame(rows)


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[trials["state"] == "COMPLETE"]
    ref_latency = 1.1 * done["latency_ms"].max()
    rows = []
    for (sampler, seed), group in trials.groupby(["sampler", "seed"]):
        front = pareto_front(group)
        volume = hypervolume(zip(front["accuracy"], front["latency_ms"]), ref_latency)
        rows.append(dict(sampler=sampler, seed=seed, hypervolume=volume,
                         best_accuracy=front["accuracy"].max(), front=len(front),
                         complete=(group["state"] == "COMPLETE").sum(), stopped=(group["state"] == "PRUNED").sum(),
                         wall_s=group["wall_s"].iloc[0]))
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--space", default="fat")
    parser.add_argument("--proxy-images", type=int, default=None, help="override the proxy's images per trial")
    parser.add_argument("--classes", default=None, help="train and score on these classes (e.g. 0,2,4,6)")
    parser.add_argument("--supernet", default=None, metavar="ID", help="score candidates with this trained supernet")
    parser.add_argument("--latency-model", default=None, help="model latency from this table (no measuring)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/sampler_bench.csv "
                                                                    "(sampler_feasibility.csv with --feasibility)")
    parser.add_argument("--feasibility", action="store_true",
                        help="share of feasible proposals, over-budget draws told with and without constraints")
    args = parser.parse_args()
    if args.feasibility:
        table = feasibility(args)
        means = table.groupby(["sampler", "over_budget_draws"])[["feasible_share", "proposals"]].mean()
        save_table(table, args.out or RESULTS / "sampler_feasibility.csv", digits=3)
        print("\nmean over seeds:\n" + means.to_string(float_format=lambda v: f"{v:.3f}"))
        return
    args.out = args.out or RESULTS / "sampler_bench.csv"
    with tempfile.TemporaryDirectory() as tmp:
        trials = pd.concat([run_one(Path(tmp), sampler, seed, args)
                            for seed in args.seeds for sampler in args.samplers], ignore_index=True)
    table = summarize(trials)
    means = table.groupby("sampler")[["hypervolume", "best_accuracy", "wall_s"]].mean()
    print(table.to_string(index=False))
    print("\nmean over seeds:\n" + means.to_string())
    if {"tpe", "random"} <= set(means.index):
        ratio = means.loc["tpe", "hypervolume"] / means.loc["random", "hypervolume"]
        print(f"\nhypervolume ratio tpe / random: {ratio:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
