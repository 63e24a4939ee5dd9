"""Search with and without a zero-cost pre-screen, at equal wall time: best proxy accuracy under the budget.

For each seed the two searches (default space, budget, proxy and TPE; no references) run at the
same time in two processes of one thread each, so both see the same machine load, and each
stops starting trials after `--seconds`. The table gives per search the best COMPLETE trial's
proxy accuracy (Fashion-MNIST, not ImageNet accuracy), the trials trained and screened out;
saved to bench/results/prescreen_bench.csv.

    python bench/prescreen_bench.py --proxy synflow --keep 0.25 --seeds 0 1 2 --seconds 180
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split

from fatnas.estimate.cost import parse_budget
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.space import load_space
from fatnas.runs.store import create_run
from fatnas.search import SearchSettings, run_search


def one_search(root: str, seed: int, prescreen: str | None, keep: float, seconds: float, budget: str) -> dict:
    space = load_space("fat")
    settings = SearchSettings(space=space, budget=parse_budget([budget], res=space.resolution),
                              proxy=ProxySettings(seed=seed), trials=10_000, timeout_s=seconds, seed=seed,
                              references=False, prescreen=prescreen, prescreen_keep=keep)
    run = create_run(f"{prescreen or 'none'}-{seed}", root=Path(root))
    start = time.perf_counter()
    run_search(run, settings, progress=False)
    trials = run.trials()
    complete = trials[trials["state"] == "COMPLETE"]
    states = trials["state"].value_counts()
    return dict(seed=seed, prescreen=prescreen or "none", keep=keep if prescreen else 1.0,
                wall_s=time.perf_counter() - start, best_accuracy=complete["accuracy"].max(),
                complete=int(states.get("COMPLETE", 0)), stopped=int(states.get("PRUNED", 0)),
                screened_out=int(states.get("SCREENED_OUT", 0)), front=len(run.pareto()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", default="synflow")
    parser.add_argument("--keep", type=float, default=0.25)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=180.0, help="wall time of each search")
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--out", type=Path, default=RESULTS / "prescreen_bench.csv")
    args = parser.parse_args()
    rows = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as root, \
            concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        for seed in args.seeds:  # the pair of one seed runs side by side
            pair = [pool.submit(one_search, root, seed, proxy, args.keep, args.seconds, args.budget)
                    for proxy in (None, args.proxy)]
            rows += [f.result() for f in pair]
            print(pd.DataFrame(rows[-2:]).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    save_table(table, args.out, digits=3)
    means = table.groupby("prescreen")[["best_accuracy", "complete", "screened_out"]].mean()
    print(f"\nmean over {len(args.seeds)} seeds (budget {args.budget}, fvcore total at 224 px):\n{means.to_string()}")


if __name__ == "__main__":
    main()
