"""Does a confirm stage pay for itself? Two arms at equal CPU time, judged on held-out retraining.

For each search seed, two arms run as `fatnas search` processes (one thread each):
- `plain`: the search alone, given the whole time (`--timeout` = `--cpu-seconds`);
- `confirm`: the search for (1 - `--confirm-share`) of the time, then `--confirm` with the rest (seconds of
  training, summed).
Each arm's final front (the plain arm's search front; the confirm arm's confirmed front) is judged by retraining
its `--top` most accurate networks with the `--recipe` (default: the fidelity reference) on `--heldout-seeds`,
seeds neither arm trained with (searches use 0 and 1, confirm stages 1000 and up).

What the bench keeps is committed, so a stopped call resumes on any clone (a training already kept is not run
again; a search stopped before its end is run again from the start):
- confirm_bench_fronts.csv: each arm's judged networks, with the CPU seconds of its search and what retraining
  needs of its task, as each arm ends;
- confirm_bench_rows.csv: one row per held-out training, as it ends;
- confirm_bench.csv: one row per (arm, seed): its CPU seconds, the held-out hypervolume (held-out accuracy against
  the search's latency; accuracy 0 and 1.1 x the largest latency of any judged network, one point shared by
  every row), the same with every judged network re-timed in this process (`retimed_`: one latency scale for all
  arms, as each search timed its networks under its own load), each with a 90% interval from the judge's own noise
  (the pooled seed std of one held-out training; latencies taken as measured), the recommended network (the arm's
  most accurate) with what the arm claims for it and what it scores held out, and how many of the arm's held-out
  trainings are done. Each seed's confirm minus plain hypervolume is printed with its interval.
Arms append under a lock, so `--arms plain` and `--arms confirm` may run as two processes at once.

    python bench/confirm_bench.py --seeds 0 1 --cpu-seconds 3600 --budget 2GFLOPs
    python bench/confirm_bench.py --seeds 0 1 --cpu-seconds 60 --budget 6MFLOPs --space tests/data/tiny_space.yaml \
        --recipe train_images=256 --search-args="--proxy-images 128 --batch-size 32" --tag tiny
"""
from __future__ import annotations

import argparse
import json
import resource
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from common import RESULTS, append_rows, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import numpy as np
import pandas as pd

from fatnas.estimate.data import load_dataset
from fatnas.estimate.latency import ReferenceClock, reference_network
from fatnas.estimate.proxy import ProxySettings, configure_threads, train_proxy
from fatnas.model.config import FATConfig
from fatnas.model.network import FAT
from fatnas.runs.noise import pooled_std
from fatnas.runs.store import hypervolume, open_run, pareto_front, runs_root
from fatnas.study.fidelity.specs import parse_fidelity

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("plain", "confirm")
FRONT_COLUMNS = ["arm", "seed", "cpu_seconds", "trial", "latency_ms", "claimed_accuracy", "config", "task"]
ROW_COLUMNS = ["arm", "seed", "trial", "heldout_seed", "latency_ms", "claimed_accuracy", "heldout_accuracy",
               "seconds"]


def read_rows(path: Path, columns: list[str]) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=columns)


def run_search(arm: str, seed: int, run_id: str, args: argparse.Namespace) -> float:
    """Run one arm's search (and confirm stage) as a process, from the start; the CPU seconds it took."""
    shutil.rmtree(runs_root() / run_id, ignore_errors=True)  # a search stopped before its end: its time is unknown
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
    return cpu


def final_front(run_id: str, arm: str, top: int) -> pd.DataFrame:
    """The arm's front (trial, config, latency_ms, claimed accuracy), its `top` most accurate networks."""
    run = open_run(run_id)
    if arm == "confirm" and not run.read_table("confirmed.csv").empty:
        confirmed = run.read_table("confirmed.csv")
        front = confirmed[confirmed["on_confirmed_front"].astype(bool) & (confirmed["trial"] >= 0)]
    else:
        front = pareto_front(run.trials())
    front = front.nlargest(top, "accuracy")[["trial", "config", "latency_ms", "accuracy"]]
    return front.rename(columns={"accuracy": "claimed_accuracy"})


def run_task(run_id: str) -> str:
    """What a held-out training needs of the run's task (data set, split seed, classes, proxy settings), as JSON."""
    meta = open_run(run_id).read_meta()
    return json.dumps(dict(dataset=meta.get("dataset", "fashion-mnist"), data_dir=meta.get("data_dir"),
                           data_split=int(meta["seeds"]["data_split"]), classes=list(meta.get("classes") or ()),
                           proxy=meta["proxy"]))


def arm_front(arm: str, seed: int, args: argparse.Namespace, fronts_path: Path) -> pd.DataFrame:
    """The arm's judged networks: kept from an earlier call, or from its search (run now unless it ended)."""
    kept = read_rows(fronts_path, FRONT_COLUMNS)
    kept = kept[(kept["arm"] == arm) & (kept["seed"] == seed)]
    if not kept.empty:
        return kept
    run_id = f"confirm_bench{args.tag}_{arm}_{seed}"
    meta_path = runs_root() / run_id / "run.yaml"
    cpu = open_run(run_id).read_meta().get("bench_cpu_seconds") if meta_path.is_file() else None
    if cpu is None:
        cpu = run_search(arm, seed, run_id, args)
    front = final_front(run_id, arm, args.top).assign(arm=arm, seed=seed, cpu_seconds=cpu, task=run_task(run_id))
    append_rows(fronts_path, front.to_dict("records"), FRONT_COLUMNS)
    return front[FRONT_COLUMNS]


def retrain(network: pd.Series, heldout_seed: int, recipe: str) -> dict:
    """One held-out training of a front network with the recipe, on its run's own task."""
    task = json.loads(network["task"])
    data = load_dataset(task["dataset"], task["data_dir"], seed=task["data_split"], classes=tuple(task["classes"]))
    settings = parse_fidelity(recipe, ProxySettings(**task["proxy"])).replace(seed=heldout_seed)  # as confirm's
    cfg = FATConfig.from_dict(json.loads(network["config"])).replace(num_classes=data.num_classes,
                                                                     in_chans=data.in_chans)
    result = train_proxy(cfg, data, settings)
    return dict(trial=int(network["trial"]), heldout_seed=heldout_seed, latency_ms=float(network["latency_ms"]),
                claimed_accuracy=float(network["claimed_accuracy"]), heldout_accuracy=result.accuracy,
                seconds=result.train_seconds + result.eval_seconds)


def judge(front: pd.DataFrame, args: argparse.Namespace, rows_path: Path) -> None:
    """Retrain the arm's front on the held-out seeds; each row appended as its training ends."""
    kept = read_rows(rows_path, ROW_COLUMNS)[["arm", "seed", "trial", "heldout_seed"]]
    done = set(kept.itertuples(index=False, name=None))  # only this arm's rows matter; no other process adds them
    for _, network in front.iterrows():
        for heldout in args.heldout_seeds:
            if (network["arm"], network["seed"], network["trial"], heldout) in done:
                continue
            row = dict(arm=network["arm"], seed=int(network["seed"]), **retrain(network, heldout, args.recipe))
            print(f"  {row['arm']} seed {row['seed']} trial {row['trial']} held-out seed {heldout}: "
                  f"{row['heldout_accuracy']:.4f} (claimed {row['claimed_accuracy']:.4f})", flush=True)
            append_rows(rows_path, [row], ROW_COLUMNS)


def retime(fronts: pd.DataFrame, res: int, repeats: int) -> pd.Series:
    """Every judged network timed again in this one process, interleaved with fat_b0, so that every arm is judged
    on one latency scale (each search timed its own networks in its own process, under its own load)."""
    clock = ReferenceClock(reference_network(), res=res, threads=1, repeats=repeats)
    ratios = [clock.measure(FAT(FATConfig.from_dict(json.loads(config)))).ratio for config in fronts["config"]]
    return pd.Series(ratios, index=fronts.index) * clock.reference_ms


def hypervolume_draws(group: pd.DataFrame, latency: str, ref_latency: float, std: float,
                      draws: int = 4000) -> np.ndarray:
    """The arm's held-out hypervolume with each network's accuracy redrawn within the judge's noise (its mean over
    `count` seeds); the latencies as measured."""
    rng = np.random.default_rng(0)
    scale = std / np.sqrt(group["count"].to_numpy(dtype=float))
    accuracies = rng.normal(group["heldout_accuracy"].to_numpy(dtype=float), scale, size=(draws, len(group)))
    return np.array([hypervolume(zip(drawn, group[latency]), ref_latency) for drawn in accuracies])


def summarize(rows: pd.DataFrame, fronts: pd.DataFrame, heldout_seeds: int, retimed: pd.Series) -> pd.DataFrame:
    """One row per (arm, seed): CPU seconds, held-out hypervolume (one shared reference point) with its 90% interval
    from the judge's noise, on the searches' latencies and on `retimed` ones, the recommended, and how many of its
    held-out trainings (judged networks x `heldout_seeds`) are done. Prints each seed's confirm minus plain."""
    means = rows.groupby(["arm", "seed", "trial", "latency_ms", "claimed_accuracy"], as_index=False)[
        "heldout_accuracy"].agg(["mean", "count"]).rename(columns={"mean": "heldout_accuracy"})
    means = means.merge(fronts.assign(retimed_ms=retimed)[["arm", "seed", "trial", "retimed_ms"]])
    std = pooled_std(rows, key=["arm", "seed", "trial"], value="heldout_accuracy")[0] or 0.0  # the judge's own noise
    refs = {latency: 1.1 * means[latency].max() for latency in ("latency_ms", "retimed_ms")}
    out, draws = [], {}
    for (arm, seed), group in means.groupby(["arm", "seed"]):
        best = group.loc[group["claimed_accuracy"].idxmax()]
        front = fronts[(fronts["arm"] == arm) & (fronts["seed"] == seed)]
        row = dict(arm=arm, seed=seed, cpu_seconds=float(front["cpu_seconds"].iloc[0]))
        for latency, name in (("latency_ms", "heldout_hypervolume"), ("retimed_ms", "retimed_hypervolume")):
            draws[arm, seed, name] = hypervolume_draws(group, latency, refs[latency], std)
            row[name] = hypervolume(zip(group["heldout_accuracy"], group[latency]), refs[latency])
            row[f"{name}_lo"], row[f"{name}_hi"] = np.percentile(draws[arm, seed, name], [5, 95])
        out.append(dict(row, recommended_trial=int(best["trial"]), recommended_claimed=best["claimed_accuracy"],
                        recommended_heldout=best["heldout_accuracy"], ref_latency_ms=refs["latency_ms"],
                        retimed_ref_latency_ms=refs["retimed_ms"],
                        heldout_trainings=f"{int(group['count'].sum())}/{len(front) * heldout_seeds}"))
    print(f"judge: pooled held-out seed std {std:.4f} of one training")
    for (arm, seed, name), drawn in draws.items():
        if arm == "confirm" and ("plain", seed, name) in draws:
            diff = drawn - draws["plain", seed, name]
            print(f"seed {seed} {name}: confirm minus plain {np.median(diff):+.3f} (90% interval "
                  f"{np.percentile(diff, 5):+.3f} to {np.percentile(diff, 95):+.3f}; confirm ahead in "
                  f"{(diff >= 0).mean():.0%} of draws)")
    return pd.DataFrame(out)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--cpu-seconds", type=float, default=3600, help="each arm's time (one thread)")
    parser.add_argument("--confirm-share", type=float, default=0.4, help="the confirm arm's share for confirming")
    parser.add_argument("--budget", default="2GFLOPs")
    parser.add_argument("--space", default=None)
    parser.add_argument("--search-args", default="", help="more `fatnas search` flags, e.g. '--proxy-images 128'")
    parser.add_argument("--recipe", default="reference", help="the confirm and held-out recipe (fidelity syntax)")
    parser.add_argument("--heldout-seeds", type=int, nargs="+", default=[2000, 2001])
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--latency-res", type=int, default=224, help="the resolution judged networks are re-timed at")
    parser.add_argument("--latency-repeats", type=int, default=21, help="rounds of each re-timing against fat_b0")
    parser.add_argument("--tag", default="", help="a suffix of the run ids and result files (e.g. _tiny)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.tag = f"_{args.tag}" if args.tag else ""
    configure_threads(1)
    fronts_path, rows_path = (RESULTS / f"confirm_bench{args.tag}_{name}.csv" for name in ("fronts", "rows"))
    for seed in args.seeds:
        for arm in args.arms:
            judge(arm_front(arm, seed, args, fronts_path), args, rows_path)
    fronts = read_rows(fronts_path, FRONT_COLUMNS)
    summary = summarize(read_rows(rows_path, ROW_COLUMNS), fronts, len(args.heldout_seeds),
                        retime(fronts, args.latency_res, args.latency_repeats))
    save_table(summary, RESULTS / f"confirm_bench{args.tag}.csv", digits=4)


if __name__ == "__main__":
    main()
