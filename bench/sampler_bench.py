"""Samplers compared at equal trial counts: hypervolume of the accuracy-latency front, several seeds.

Every (sampler, seed) pair runs the same search (space, budget, proxy) into a temporary run
folder; hypervolumes share one reference point (accuracy 0, 1.1 x the largest latency seen).
Prints the table and saves it to bench/results/sampler_bench.csv.

    python bench/sampler_bench.py --samplers tpe random --seeds 0 1 2 --trials 20
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from fatnas.cost import parse_budget
from fatnas.proxy import ProxySettings
from fatnas.search import SearchSettings, run_search
from fatnas.space import load_space
from fatnas.store import create_run, hypervolume, pareto_front

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(root: Path, sampler: str, seed: int, args: argparse.Namespace) -> pd.DataFrame:
    space = load_space(args.space)
    proxy = ProxySettings(seed=seed, **({"train_images": args.proxy_images} if args.proxy_images else {}))
    settings = SearchSettings(space=space, budget=parse_budget(args.budget, res=space.resolution), proxy=proxy,
                              trials=args.trials, sampler=sampler, seed=seed, references=False)
    run = create_run(f"{sampler}-{seed}", root=root)
    start = time.perf_counter()
    run_search(run, settings, progress=False)
    trials = run.trials().assign(sampler=sampler, seed=seed, wall_s=time.perf_counter() - start)
    return trials


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    done = trials[trials["state"] == "COMPLETE"]
    ref_latency = 1.1 * done["latency_ms"].max()
    rows = []
    for (sampler, seed), group in trials.groupby(["sampler", "seed"]):
        front = pareto_front(group)
        rows.append(dict(sampler=sampler, seed=seed, hypervolume=hypervolume(zip(front["accuracy"], front["latency_ms"]), ref_latency),
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
    parser.add_argument("--out", type=Path, default=RESULTS / "sampler_bench.csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trials = pd.concat([run_one(Path(tmp), sampler, seed, args)
                            for seed in args.seeds for sampler in args.samplers], ignore_index=True)
    table = summarize(trials)
    means = table.groupby("sampler")[["hypervolume", "best_accuracy", "wall_s"]].mean()
    print(table.to_string(index=False))
    print("\nmean over seeds:\n" + means.to_string())
    if {"tpe", "random"} <= set(means.index):
        print(f"\nhypervolume ratio tpe / random: {means.loc['tpe', 'hypervolume'] / means.loc['random', 'hypervolume']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
