"""Do a search's fronts hold up? Retrain the front networks of search runs with the reference recipe.

For each search run, the `--top` best networks of its accuracy-latency front (by the search's own accuracy) are
trained again with the fidelity study's reference recipe (`reference`: 16,384 images, 2 epochs, augmented, scored
on the test split) for each of `--seeds`, on the run's own data set and classes. Each run's retrained front is
then measured by the hypervolume of (reference accuracy, the search's latency), all runs sharing one reference
point (accuracy 0, 1.1 x the largest latency among the retrained networks), so the fronts of two estimators (say a
supernet search and a proxy search given the same CPU time) compare on one footing. Trainings run in `--workers`
processes of one thread each. Rows go to bench/results/front_retrain_rows.csv as each training ends (a training
already there is not run again, so a stopped call resumes and the runs of a comparison can be retrained in separate
calls) and front_retrain.csv (one per run named, over its chosen networks).

    python bench/front_retrain.py runs/sn_search runs/proxy_search --top 5 --seeds 0 1 --workers 2
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd

from fatnas.estimate.data import load_dataset
from fatnas.estimate.proxy import configure_threads, train_proxy
from fatnas.model.config import FATConfig
from fatnas.runs.store import hypervolume, open_run, pareto_front
from fatnas.study.fidelity.specs import REFERENCE, parse_fidelity

ROW_COLUMNS = ("run", "estimator", "trial", "seed", "search_accuracy", "latency_ms", "reference_accuracy",
               "reference_loss", "seconds")
_DATA: dict[tuple, object] = {}


def front_networks(run_id: str, top: int) -> tuple[pd.DataFrame, dict]:
    """The `top` most accurate networks of the run's front, and the run's task."""
    run = open_run(run_id)
    meta = run.read_meta()
    front = pareto_front(run.trials()).nlargest(top, "accuracy")
    task = dict(dataset=meta.get("dataset", "fashion-mnist"), data_dir=meta.get("data_dir"),
                classes=tuple(meta.get("classes") or ()), seed=int((meta.get("seeds") or {}).get("data_split", 0)))
    return front.assign(run=run.id, estimator=meta.get("estimator", "proxy")), task


def train_one(job: dict) -> dict:
    """One reference training of one front network (in a worker process)."""
    configure_threads(1)
    task = job["task"]
    key = (task["dataset"], task["data_dir"], task["classes"], task["seed"])
    if key not in _DATA:
        _DATA[key] = load_dataset(task["dataset"], task["data_dir"], seed=task["seed"], classes=task["classes"])
    data = _DATA[key]
    cfg = FATConfig.from_dict(json.loads(job["config"])).replace(num_classes=data.num_classes,
                                                                   in_chans=data.in_chans)
    start = time.perf_counter()
    result = train_proxy(cfg, data, parse_fidelity(REFERENCE).replace(seed=job["seed"]))
    return dict(run=job["run"], estimator=job["estimator"], trial=job["trial"], seed=job["seed"],
                search_accuracy=job["accuracy"], latency_ms=job["latency_ms"], reference_accuracy=result.accuracy,
                reference_loss=result.val_loss, seconds=time.perf_counter() - start)


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    means = rows.groupby(["run", "estimator", "trial", "latency_ms"], as_index=False)[
        ["search_accuracy", "reference_accuracy"]].mean()
    ref_latency = 1.1 * means["latency_ms"].max()
    out = []
    for (run, estimator), group in means.groupby(["run", "estimator"]):
        out.append(dict(run=run, estimator=estimator, networks=len(group),
                        hypervolume=hypervolume(zip(group["reference_accuracy"], group["latency_ms"]), ref_latency),
                        best_reference_accuracy=group["reference_accuracy"].max(),
                        mean_reference_accuracy=group["reference_accuracy"].mean(),
                        ref_latency_ms=ref_latency))
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="search run ids or folders")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "front_retrain.csv")
    args = parser.parse_args()
    jobs = []
    for run_id in args.runs:
        front, task = front_networks(run_id, args.top)
        jobs += [dict(run=row.run, estimator=row.estimator, trial=int(row.trial), config=row.config,
                      accuracy=float(row.accuracy), latency_ms=float(row.latency_ms), seed=seed, task=task)
                 for row in front.itertuples() for seed in args.seeds]
    rows_path = args.out.with_name(args.out.stem + "_rows.csv")
    table = pd.read_csv(rows_path) if rows_path.exists() else pd.DataFrame(columns=list(ROW_COLUMNS))
    done = set(zip(table["run"], table["trial"], table["seed"]))
    todo = [job for job in jobs if (job["run"], job["trial"], job["seed"]) not in done]
    print(f"{len(todo)} reference trainings in {args.workers} worker(s) ({len(jobs) - len(todo)} already in "
          f"{rows_path.name})", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(train_one, todo):
            print(f"  {row['run']} trial {row['trial']} seed {row['seed']}: reference accuracy "
                  f"{row['reference_accuracy']:.4f} ({row['seconds']:.0f} s)", flush=True)
            # saved as each training ends, so a stopped call keeps what it finished and a rerun skips it
            table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
            save_table(table, rows_path, digits=4)
    chosen = set(zip(*(table[c] for c in ("run", "trial")))) & {(job["run"], job["trial"]) for job in jobs}
    named = table[[(run, trial) in chosen for run, trial in zip(table["run"], table["trial"])]]
    save_table(summarize(named), args.out, digits=4)


if __name__ == "__main__":
    main()
