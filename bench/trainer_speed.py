"""Trainer speed: the CPU fast path (`train_proxy(fast=True)`) against the plain trainer, paired, interleaved.

Speed (the default): for each network and recipe, both trainers are built in this one process from the
recipe's own settings, data and seed, and timed in turns, `--rounds` rounds of `--steps` training steps
each (plain first in even rounds, fast first in odd ones), one thread. A training's seconds are the
median step time times the recipe's steps, plus one timed final evaluation; `before_s` is the plain
trainer (today's main before the fast path), `after_s` the fast one, `speedup` before over after. Saved
to bench/results/trainer_speed.csv. The recipes:

- `reference`: the fmnist10 reference (all 10 classes, 28 px, 16,384 images, 6 epochs, crops and flips,
  scored on the 10,000 test images), bench/task_pilot.py's recipe;
- `proxy`: the default search proxy (56 px, 1,024 images, 1 epoch), on fmnist10.

Accuracy (`--accuracy NET ...`): full fmnist10 reference trainings with the fast trainer, rows appended to
bench/results/trainer_speed_accuracy.csv as each ends (a training already there is not run again), beside
the plain trainer's result for the same network and seed in bench/results/task_pilot/fmnist10 and the
difference in pooled seed stds of that pilot.

Memory (`--memory`): how much a trainer's first `--steps` steps raise a fresh process's peak resident memory
above the built trainer (its data and network), plain against fast; bench/results/trainer_memory.csv.

    python bench/trainer_speed.py --networks fat_b0 fat_b2 arch00 arch01 arch02
    python bench/trainer_speed.py --accuracy fat_b0 fat_b1 arch00 --seeds 0
    python bench/trainer_speed.py --memory   # peak memory a training step adds, each trainer in a fresh process
"""
from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import statistics
import time

from common import RESULTS, append_rows, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import numpy as np
import pandas as pd
import torch
from task_pilot import PILOT, RECIPES, ROWS_FILE, pilot_networks, task_summary, train_one
from tqdm import tqdm

from fatnas.estimate.proxy import ProxySettings, configure_threads, evaluate_network, proxy_trainer
from fatnas.estimate.tasks import load_task
from fatnas.study.fidelity.specs import parse_fidelity

TASK = "fmnist10"
SPEED_RECIPES = {"reference": parse_fidelity(RECIPES[TASK]), "proxy": ProxySettings()}
ACCURACY_FILE = RESULTS / "trainer_speed_accuracy.csv"
ACCURACY_COLUMNS = ["network", "seed", "after_accuracy", "after_loss", "after_s", "before_accuracy", "before_loss",
                    "before_s", "accuracy_diff_in_seed_stds", "loss_diff_in_seed_stds", "cpu"]


def cpu_name() -> str:
    for line in open("/proc/cpuinfo", encoding="utf-8"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def endless_batches(trainer):
    """The trainer's batches, epoch after epoch past its end: timing needs more steps than a short recipe has."""
    while True:
        yield from trainer.train_batches()


def timed_steps(trainer, batches, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(*next(batches))
    return (time.perf_counter() - start) / steps


def timed_evaluation(trainer) -> float:
    start = time.perf_counter()
    evaluate_network(trainer.model, trainer.val)
    return time.perf_counter() - start


def paired_speed(cfg, data, settings: ProxySettings, rounds: int, steps: int) -> dict:
    """Seconds per training of the plain and the fast trainer, timed in turns in this process."""
    trainers = {fast: proxy_trainer(cfg, data, settings, fast=fast) for fast in (False, True)}
    batches = {fast: endless_batches(trainer) for fast, trainer in trainers.items()}
    for fast, trainer in trainers.items():  # warm-up: first calls allocate and plan
        timed_steps(trainer, batches[fast], 2)
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for fast in ((False, True) if r % 2 == 0 else (True, False)):
            times[fast].append(timed_steps(trainers[fast], batches[fast], steps))
    evals = {fast: timed_evaluation(trainer) for fast, trainer in trainers.items()}
    total_steps = trainers[False].total_steps
    step = {fast: statistics.median(times[fast]) for fast in times}
    seconds = {fast: step[fast] * total_steps + evals[fast] for fast in times}
    return dict(before_s=seconds[False], after_s=seconds[True], speedup=seconds[False] / seconds[True],
                before_step_ms=1e3 * step[False], after_step_ms=1e3 * step[True], steps=total_steps,
                timed_steps=rounds * steps)


def speed_table(names: list[str], recipes: list[str], rounds: int, steps: int) -> pd.DataFrame:
    networks, data, cpu = pilot_networks(3), load_task(TASK), cpu_name()
    rows = []
    for name, recipe in tqdm([(n, r) for r in recipes for n in names], desc="paired timings"):
        settings = SPEED_RECIPES[recipe]
        row = paired_speed(networks[name], data, settings, rounds, steps)
        rows.append(dict(network=name, recipe=recipe, res=settings.res, **row, threads=torch.get_num_threads(),
                         torch=torch.__version__, cpu=cpu))
    return pd.DataFrame(rows)


def _step_memory(name: str, recipe: str, fast: bool, steps: int) -> float:
    """MiB by which `steps` training steps raise this (fresh) process's peak resident memory over the built trainer."""
    configure_threads(1)
    trainer = proxy_trainer(pilot_networks(3)[name], load_task(TASK), SPEED_RECIPES[recipe], fast=fast)
    batches = trainer.train_batches()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(steps):
        trainer.train_step(*next(batches))
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def memory_table(names: list[str], recipes: list[str], steps: int) -> pd.DataFrame:
    """Training-step memory of the plain and the fast trainer, each measured in a fresh process of its own."""
    context = multiprocessing.get_context("spawn")
    rows = []
    for name, recipe in tqdm([(n, r) for r in recipes for n in names], desc="step memory"):
        with context.Pool(1, maxtasksperchild=1) as pool:
            before, after = (pool.apply(_step_memory, (name, recipe, fast, steps)) for fast in (False, True))
        rows.append(dict(network=name, recipe=recipe, res=SPEED_RECIPES[recipe].res, before_mib=before,
                         after_mib=after, ratio=after / before))
    return pd.DataFrame(rows)


def pilot_result(name: str, seed: int) -> tuple[float, float, float]:
    """(accuracy, loss, seconds) of the plain trainer's pilot training of `name` with `seed` (NaN if none)."""
    rows = pd.read_csv(PILOT / TASK / ROWS_FILE)
    rows = rows[(rows["arch"] == name) & (rows["seed"] == seed)].set_index("metric")
    if rows.empty:
        return float("nan"), float("nan"), float("nan")
    return float(rows.loc["accuracy", "value"]), float(rows.loc["loss", "value"]), float(rows["seconds"].iloc[0])


def accuracy_rows(names: list[str], seeds: list[int]) -> None:
    networks, data = pilot_networks(3), load_task(TASK)
    stds = {row["metric"]: row["seed_std"] for row in task_summary(TASK, pd.read_csv(PILOT / TASK / ROWS_FILE))}
    done = set(zip(*pd.read_csv(ACCURACY_FILE)[["network", "seed"]].T.to_numpy())) if ACCURACY_FILE.exists() else set()
    for name, seed in [(n, s) for s in seeds for n in names if (n, s) not in done]:
        accuracy, loss = train_one(TASK, name, networks[name], seed, data)  # the fast trainer, train_proxy's default
        before_accuracy, before_loss, before_s = pilot_result(name, seed)
        row = dict(network=name, seed=seed, after_accuracy=accuracy["value"], after_loss=loss["value"],
                   after_s=accuracy["seconds"], before_accuracy=before_accuracy, before_loss=before_loss,
                   before_s=before_s, cpu=cpu_name(),
                   accuracy_diff_in_seed_stds=(accuracy["value"] - before_accuracy) / stds["accuracy"],
                   loss_diff_in_seed_stds=(loss["value"] - before_loss) / stds["loss"])
        append_rows(ACCURACY_FILE, [row], ACCURACY_COLUMNS)
        print(f"{name} seed {seed}: accuracy {row['after_accuracy']:.4f} (plain {before_accuracy:.4f}, "
              f"{row['accuracy_diff_in_seed_stds']:+.2f} seed stds), {row['after_s']:.0f} s", flush=True)
    table = pd.read_csv(ACCURACY_FILE)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"largest |difference|: {np.abs(table['accuracy_diff_in_seed_stds']).max():.2f} pooled seed stds (accuracy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["fat_b0", "fat_b2", "arch00", "arch01", "arch02"])
    parser.add_argument("--recipes", nargs="+", choices=sorted(SPEED_RECIPES), default=["reference", "proxy"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed turn")
    parser.add_argument("--accuracy", nargs="+", metavar="NET", help="full reference trainings of these networks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--memory", action="store_true", help="training-step memory, plain against fast")
    args = parser.parse_args()
    configure_threads(1)
    if args.accuracy:
        accuracy_rows(args.accuracy, args.seeds)
        return
    if args.memory:
        save_table(memory_table(args.networks, args.recipes, args.steps), RESULTS / "trainer_memory.csv", digits=2)
        return
    save_table(speed_table(args.networks, args.recipes, args.rounds, args.steps), RESULTS / "trainer_speed.csv",
               digits=3)


if __name__ == "__main__":
    main()
