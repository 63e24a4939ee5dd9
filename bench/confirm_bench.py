"""Does a confirm stage pay for itself? Two arms at equal CPU time, judged on held-out retraining.

For each search seed, two arms run as `fatnas search` processes (one thread each):
- `plain`: the search alone, given the whole time (`--timeout` = `--cpu-seconds`);
- `confirm`: the search for (1 - `--confirm-share`) of the time, then `--confirm` with the rest (seconds of
  training, summed).
Each arm's final front (the plain arm's search front; the confirm arm's confirmed front) is judged by retraining
its `--top` most accurate networks with the `--recipe` (default: the fidelity reference) on `--heldout-seeds`,
seeds neither arm trained with (searches use 0 and 1, confirm stages 1000 and up). Rows go to
bench/results/confirm_bench_rows.csv as each training ends (a training already there is not run again, so a
stopped call resumes); confirm_bench.csv has one row per (arm, seed): its CPU seconds, the held-out hypervolume
(held-out accuracy against the search's latency; accuracy 0 and 1.1 x the largest latency of any judged network,
one point shared by every row), and the recommended network (the arm's most accurate) with what the arm claims for
it and what it scores held out.

    python bench/confirm_bench.py --seeds 0 1 --cpu-seconds 3600 --budget 2GFLOPs
    python bench/confirm_bench.py --seeds 0 1 --cpu-seconds 60 --budget 6MFLOPs --space tests/data/tiny_space.yaml \
        --recipe train_images=256 --search-args="--proxy-images 128 --batch-size 32" --tag tiny
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd

from fatnas.estimate.data import load_dataset
from fatnas.estimate.proxy import ProxySettings, configure_threads, train_proxy
from fatnas.model.config import FATConfig
from fatnas.runs.store import hypervolume, open_run, pareto_front
from fatnas.study.fidelity.specs import parse_fidelity

ROOT = Path(__file__).resolve().parents[1]
ROW_COLUMNS = ("arm", "seed", "trial", "heldout_seed", "latency_ms", "claimed_accuracy", "heldout_accuracy",
               "seconds")
ARMS = ("plain", "confirm")


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> tuple[str, float]:
    """Run one arm's search (and confirm stage) as a process; its run id and the CPU seconds it took."""
    run_id = f"confirm_bench{args.tag}_{arm}_{seed}"
    if (Path(os.environ.get("FATNAS_RUNS_DIR") or ROOT / "runs") / run_id / "run.yaml").is_file():
        return run_id, float(open_run(run_id).read_meta().get("bench_cpu_seconds") or 0.0)
    search_time = args.cpu_seconds * (1 - args.confirm_share) if arm == "confirm" else args.cpu_seconds
    command = [sys.executable, str(ROOT / "cli.py"), "search", "--budget", args.budget, "--run-id", run_id,
               "--seed", str(seed), "--threads", "1", "--quiet", "--trials", "100000", "--timeout",
               f"{search_time:g}", *(["--space", args.space] if args.space else []), *shlex.split(args.search_args)]
    if arm == "confirm":
        command += ["--confirm", f"{args.cpu_seconds * args.confirm_share:g}s", "--confirm-recipe", args.recipe]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    open_run(run_id).update_meta(bench_cpu_seconds=cpu)
    return run_id, cpu


def final_front(run_id: str, arm: str, top: int) -> pd.DataFrame:
    """The arm's front (trial, config, latency_ms, claimed accuracy), its `top` most accurate networks."""
    run = open_run(run_id)
    if arm == "confirm" and not run.read_table("confirmed.csv").empty:
        confirmed = run.read_table("confirmed.csv")
        front = confirmed[confirmed["on_confirmed_front"].astype(bool) & (confirmed["trial"] >= 0)]
    else:
        front = pareto_front(run.trials())
    return front.nlargest(top, "accuracy")[["trial", "config", "latency_ms", "accuracy"]]


def retrain(run_id: str, row: pd.Series, heldout_seed: int, recipe: str) -> dict:
    """One held-out training of a front network with the recipe, on the run's own task."""
    meta = open_run(run_id).read_meta()
    data = load_dataset(meta.get("dataset", "fashion-mnist"), meta.get("data_dir"),
                        seed=int(meta["seeds"]["data_split"]), classes=tuple(meta.get("classes") or ()))
    settings = parse_fidelity(recipe, ProxySettings(**meta["proxy"])).replace(seed=heldout_seed)  # as confirm's
    cfg = FATConfig.from_dict(json.loads(row["config"])).replace(num_classes=data.num_classes, in_chans=data.in_chans)
    result = train_proxy(cfg, data, settings)
    return dict(trial=int(row["trial"]), heldout_seed=heldout_seed, latency_ms=float(row["latency_ms"]),
                claimed_accuracy=float(row["accuracy"]), heldout_accuracy=result.accuracy,
                seconds=result.train_seconds + result.eval_seconds)


def judge(arm: str, seed: int, run_id: str, args: argparse.Namespace, rows: pd.DataFrame, rows_path: Path
          ) -> pd.DataFrame:
    """Retrain the arm's front on the held-out seeds; each row saved as its training ends."""
    for _, network in final_front(run_id, arm, args.top).iterrows():
        for heldout in args.heldout_seeds:
            done = rows[(rows["arm"] == arm) & (rows["seed"] == seed) & (rows["trial"] == network["trial"])
                        & (rows["heldout_seed"] == heldout)]
            if not done.empty:
                continue
            row = dict(arm=arm, seed=seed, **retrain(run_id, network, heldout, args.recipe))
            print(f"  {arm} seed {seed} trial {row['trial']} held-out seed {heldout}: "
                  f"{row['heldout_accuracy']:.4f} (claimed {row['claimed_accuracy']:.4f})", flush=True)
            rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
            save_table(rows, rows_path, digits=4)
    return rows


def summarize(rows: pd.DataFrame, cpu: dict[tuple[str, int], float]) -> pd.DataFrame:
    """One row per (arm, seed): CPU seconds, held-out hypervolume (one shared reference point), the recommended."""
    means = rows.groupby(["arm", "seed", "trial", "latency_ms", "claimed_accuracy"], as_index=False)[
        "heldout_accuracy"].mean()
    ref_latency = 1.1 * means["latency_ms"].max()
    out = []
    for (arm, seed), group in means.groupby(["arm", "seed"]):
        best = group.loc[group["claimed_accuracy"].idxmax()]
        out.append(dict(arm=arm, seed=seed, cpu_seconds=cpu.get((arm, seed), float("nan")),
                        heldout_hypervolume=hypervolume(zip(group["heldout_accuracy"], group["latency_ms"]),
                                                        ref_latency),
                        recommended_trial=int(best["trial"]), recommended_claimed=best["claimed_accuracy"],
                        recommended_heldout=best["heldout_accuracy"], ref_latency_ms=ref_latency))
    return pd.DataFrame(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cpu-seconds", type=float, default=3600, help="each arm's time (one thread)")
    parser.add_argument("--confirm-share", type=float, default=0.4, help="the confirm arm's share for confirming")
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--space", default=None)
    parser.add_argument("--search-args", default="", help="more `fatnas search` flags, e.g. '--proxy-images 128'")
    parser.add_argument("--recipe", default="reference", help="the confirm and held-out recipe (fidelity syntax)")
    parser.add_argument("--heldout-seeds", type=int, nargs="+", default=[2000, 2001])
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--tag", default="", help="a suffix of the run ids and result files (e.g. _tiny)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.tag = f"_{args.tag}" if args.tag else ""
    configure_threads(1)
    rows_path = RESULTS / f"confirm_bench{args.tag}_rows.csv"
    rows = pd.read_csv(rows_path) if rows_path.exists() else pd.DataFrame(columns=list(ROW_COLUMNS))
    cpu = {}
    for seed in args.seeds:
        for arm in ARMS:
            run_id, cpu[(arm, seed)] = run_arm(arm, seed, args)
            rows = judge(arm, seed, run_id, args, rows, rows_path)
    save_table(summarize(rows, cpu), RESULTS / f"confirm_bench{args.tag}.csv", digits=4)


if __name__ == "__main__":
    main()
