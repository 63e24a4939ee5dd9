"""The two search backends on the same search: wall time, Ray's start-up, and overhead per trial.

Runs one search (space, budget, proxy settings, sampler, seed, trial target) three ways, each
into a fresh run folder under a temporary directory, with the data loaded once beforehand and
no reference models:

- optuna:   the Optuna backend, one trial at a time with all cores' threads;
- ray-1xN:  the Ray backend on a local runtime, one trial at a time with all cores' threads;
- ray-Nx1:  the Ray backend, one trial per core (N at once, one thread each).

Columns:
- wall_s:      run_search's wall time (for Ray including ray.init and ray.shutdown);
- ray_init_s:  time to start the local Ray runtime (recorded in run.yaml);
- work_s:      what the trials themselves did: the sum of training seconds and latency timing
               (latency_ms x (warmup + repeats) forward passes) over all trials;
- overhead_per_trial_s: (slots x (wall_s - ray_init_s) - work_s) / trials, the slot-seconds
               not spent training or timing, per trial (rows of trials.csv, infeasible draws
               included): sampling, model building, Ray actor start-up, data fetch, Tune's
               bookkeeping, and slots idling while the last trials finish.

Prints the table and saves it to bench/results/ray_bench.csv, with the trials of every run in
ray_bench_trials.csv (state, FLOPs, latency, training seconds, accuracy) beside it.

    .venv/bin/python bench/ray_bench.py                                  # default space and 2GFLOPs
    .venv/bin/python bench/ray_bench.py --trials 6 --proxy-images 256 --budget 1GFLOPs
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fatnas.estimate.cost import parse_budget  # noqa: E402
from fatnas.estimate.data import load_dataset  # noqa: E402
from fatnas.estimate.proxy import ProxySettings  # noqa: E402
from fatnas.model.space import load_space  # noqa: E402
from fatnas.runs.store import create_run  # noqa: E402
from fatnas.search import SearchSettings, backend_options, record_run, run_search  # noqa: E402
from fatnas.search.ray_backend.options import local_cpus  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def settings_for(args: argparse.Namespace, threads: int) -> SearchSettings:
    space = load_space(args.space)
    proxy_values = dict(res=args.proxy_res, train_images=args.proxy_images, epochs=args.proxy_epochs,
                        batch_size=args.batch_size)
    proxy = ProxySettings(seed=args.seed, **{k: v for k, v in proxy_values.items() if v is not None})
    return SearchSettings(space=space, budget=parse_budget(args.budget, res=space.resolution), proxy=proxy,
                          trials=args.trials, sampler=args.sampler, seed=args.seed, references=False,
                          threads=threads)


def run_one(root: Path, name: str, settings: SearchSettings, data, backend: str,
            **options) -> tuple[dict, pd.DataFrame]:
    run = create_run(name, root=root)
    record_run(run, settings, backend, argv=["bench/ray_bench.py"])
    start = time.perf_counter()
    run_search(run, settings, backend=backend, data=data, progress=False,
               options=backend_options(backend, settings.device, **options))
    wall = time.perf_counter() - start
    trials, meta = run.trials(), run.read_meta()
    timed = trials["latency_ms"].dropna()
    work = float(trials["train_seconds"].fillna(0).sum()
                 + (timed * (settings.latency_warmup + settings.latency_repeats)).sum() / 1000)
    slots = options.get("max_concurrent", 1)
    init = float(meta.get("ray", {}).get("init_seconds", 0.0))
    trained = int(trials["state"].isin(["COMPLETE", "PRUNED"]).sum())
    summary = dict(backend=name, slots=slots, threads_per_trial=settings.threads, trials=len(trials),
                   trained=trained, infeasible=int((trials["state"] == "INFEASIBLE").sum()),
                   failed=int((trials["state"] == "FAIL").sum()), wall_s=round(wall, 2), ray_init_s=round(init, 2),
                   work_s=round(work, 2),
                   overhead_per_trial_s=round((slots * (wall - init) - work) / max(len(trials), 1), 3),
                   trained_per_min=round(60 * trained / wall, 2))
    columns = ["trial", "state", "flops", "latency_ms", "train_seconds", "accuracy"]
    return summary, trials[columns].assign(backend=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", action="append", default=None, help="repeatable (default 2GFLOPs)")
    parser.add_argument("--space", default=None, help="space name or YAML (default: fat)")
    parser.add_argument("--trials", type=int, default=8, help="trained trials per backend (default 8)")
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--proxy-res", type=int, default=None)
    parser.add_argument("--proxy-images", type=int, default=None)
    parser.add_argument("--proxy-epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_bench.csv")
    args = parser.parse_args()
    args.budget = args.budget or ["2GFLOPs"]

    cores = local_cpus()
    data = load_dataset("fashion-mnist", seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        results = [run_one(root, "optuna", settings_for(args, cores), data, "optuna"),
                   run_one(root, f"ray-1x{cores}", settings_for(args, cores), data, "ray",
                           cpus_per_trial=cores, max_concurrent=1),
                   run_one(root, f"ray-{cores}x1", settings_for(args, 1), data, "ray",
                           cpus_per_trial=1, max_concurrent=cores)]
    table = pd.DataFrame([summary for summary, _ in results])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    pd.concat([trials for _, trials in results]).to_csv(args.out.with_name(f"{args.out.stem}_trials.csv"),
                                                        index=False)
    print(f"budget {', '.join(args.budget)}; space {args.space or 'fat'}; {args.trials} trained trials each; "
          f"{cores} cores; sampler {args.sampler}, seed {args.seed}")
    print(table.to_string(index=False))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
