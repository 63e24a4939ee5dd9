"""Which task lets architecture pay? Train the published family and a few sampled networks on candidate tasks.

For each task named (fatnas.estimate.tasks), fat_b0, fat_b1, fat_b2 and `--archs` networks sampled from the default
space within 2 GFLOPs (fvcore total at 224 px; the first ones the fidelity studies sample, arch00, ...) are trained
with the task's pilot recipe for each of `--seeds`, one thread each, and scored on the task's held-out test split.
Rows go to bench/results/task_pilot/<task>/fidelity.csv (the fidelity study's long format, plus `cpu_seconds`) as
each training ends; a training already there is not run again, so a stopped call resumes. Jobs run seed by seed,
so a partial pilot already compares every network. The summary, bench/results/task_pilot.csv, has one row per
(task, metric) with:

- b0, b1, b2: the seed means of the published networks; gap01, gap12 in pooled seed stds (positive: b1 > b0 and
  b2 > b1, the ImageNet order; for loss, lower is better, so the sign is turned);
- seed_std: one network's seed-to-seed std, pooled; spread_std: the std across networks of their seed means;
- seed_tau: the mean pairwise Kendall tau between seeds, each pair over the networks trained with both;
- qualifies: b0 < b1 < b2 with both gaps >= 2 pooled seed stds and seed_tau >= 0.7 (issue 34's rule).

    python bench/task_pilot.py --task fmnist10 --task fmnist-mosaic --seeds 0 1 2
    python bench/task_pilot.py --summary   # the table from the rows kept, no training
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from common import RESULTS, append_rows, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import numpy as np
import pandas as pd

from fatnas.estimate.cost import analytic_cost, parse_budget
from fatnas.estimate.proxy import configure_threads, train_proxy
from fatnas.estimate.tasks import load_task
from fatnas.model.config import FATConfig
from fatnas.model.space import load_space
from fatnas.study.fidelity.jobs import sample_architectures
from fatnas.study.fidelity.specs import CSV_COLUMNS, TRAIN, fidelity_label, parse_fidelity
from fatnas.study.rank_stats import kendall_tau

PILOT = RESULTS / "task_pilot"
FAMILY = ("fat_b0", "fat_b1", "fat_b2")
# Each task's pilot recipe: the reference's form (augmented, scored on the 10,000 held-out test images), sized so
# that 18 trainings fit about 4 core-hours.
RECIPES = {
    "fmnist10": "reference,res=28,train_images=16384,epochs=6",
    "fmnist-few": "reference,res=28,train_images=2560,epochs=30",
    "fmnist-mosaic": "reference,res=56,train_images=16384,epochs=3",
    "fmnist-upper": "reference",
}
# tasks tried before the pilot, each with the fidelity study of its reference (56 px, 16,384 images, 2 epochs)
EARLIER_STUDIES = {"fmnist10": "fidelity_study", "fmnist-upper": "fidelity_study_upper"}
GAP_STDS, MIN_SEED_TAU = 2.0, 0.7
ROWS_FILE = "fidelity.csv"
# The family's first pilot rows, trained with their own drop path (0.05 to 0.1, from ImageNet's 300-epoch recipe)
# while the sampled networks had none; a fidelity study or a search trains them all without.
IMAGENET_DROP_PATH_FILE = "family_imagenet_drop_path.csv"


def pilot_networks(archs: int) -> dict[str, FATConfig]:
    """The published family, then the first `archs` networks the fidelity studies sample from the default space.

    All train with the space's drop path (none), as in a search or a fidelity study.
    """
    space = load_space("fat")
    sampled = sample_architectures(space, parse_budget("2GFLOPs"), archs, seed=0) if archs else {}
    return {**{name: space.published(name) for name in FAMILY}, **sampled}


def done_jobs(rows_path: Path) -> set[tuple[str, int]]:
    if not rows_path.exists():
        return set()
    rows = pd.read_csv(rows_path)
    return set(zip(rows["arch"], rows["seed"]))


def train_one(task: str, arch: str, cfg: FATConfig, seed: int, data) -> list[dict]:
    """Train one network with the task's recipe and seed; its rows (accuracy and loss) in the long format."""
    settings = parse_fidelity(RECIPES[task]).replace(seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    result = train_proxy(cfg, data, settings)  # it sizes the stem and head to the data itself
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cost = analytic_cost(cfg, 224)
    return [dict(arch=arch, kind=TRAIN, measure=fidelity_label(settings.replace(seed=0)), metric=metric, seed=seed,
                 value=value, seconds=wall, params=cost.params, flops=cost.flops, config=json.dumps(cfg.to_dict()),
                 cpu_seconds=cpu)
            for metric, value in (("accuracy", result.accuracy), ("loss", result.val_loss))]


def run_task(task: str, seeds: list[int], archs: int) -> None:
    rows_path = PILOT / task / ROWS_FILE
    networks, done = pilot_networks(archs), done_jobs(rows_path)
    todo = [(seed, arch) for seed in seeds for arch in networks if (arch, seed) not in done]
    if not todo:
        return
    data = load_task(task)
    for n, (seed, arch) in enumerate(todo, start=1):
        rows = train_one(task, arch, networks[arch], seed, data)
        append_rows(rows_path, rows, [*CSV_COLUMNS, "cpu_seconds"])
        print(f"{task} {n}/{len(todo)} {arch} seed {seed}: accuracy {rows[0]['value']:.4f}, loss "
              f"{rows[1]['value']:.4f}, {rows[0]['seconds']:.0f} s", flush=True)


def task_summary(task: str, rows: pd.DataFrame) -> list[dict]:
    """One row per metric: the family's means and gaps, seed and spread stds, seed tau, and whether it qualifies."""
    out = []
    for metric, sign in (("accuracy", 1.0), ("loss", -1.0)):
        table = rows[rows["metric"] == metric].pivot_table(index="arch", columns="seed", values="value")
        seed_std = float(np.sqrt(np.nanmean(table.var(axis=1, ddof=1)))) if table.shape[1] > 1 else float("nan")
        means = table.mean(axis=1)
        family = [float(means.get(name, np.nan)) for name in FAMILY]
        gaps = [sign * (family[i + 1] - family[i]) / seed_std for i in range(2)]
        pairs = [table[[a, b]].dropna() for a, b in itertools.combinations(table.columns, 2)]
        taus = [kendall_tau(pair.iloc[:, 0].to_numpy(), pair.iloc[:, 1].to_numpy()) for pair in pairs if len(pair) >= 3]
        seed_tau = float(np.mean(taus)) if taus else float("nan")
        cpu_seconds = rows.drop_duplicates(["arch", "seed"])["cpu_seconds"].sum()
        out.append(dict(task=task, metric=metric, recipe=rows["measure"].iloc[0], networks=len(table),
                        seeds=int(table.shape[1]), trainings=int(table.count().sum()),
                        core_hours_per_network=float(cpu_seconds / len(table) / 3600),
                        b0=family[0], b1=family[1], b2=family[2], gap01=gaps[0], gap12=gaps[1],
                        seed_std=seed_std, spread_std=float(means.std(ddof=1)), seed_tau=seed_tau,
                        qualifies=bool(min(gaps) >= GAP_STDS and seed_tau >= MIN_SEED_TAU)))
    return out


def study_rows(study: str) -> pd.DataFrame:
    """The reference trainings of an earlier fidelity study, in the pilot's form (wall seconds as CPU seconds)."""
    rows = pd.read_csv(RESULTS / study / ROWS_FILE)
    rows = rows[(rows["kind"] == TRAIN) & (rows["measure"] == fidelity_label(parse_fidelity("reference")))]
    return rows.assign(cpu_seconds=rows["seconds"])


def pilot_rows() -> list[tuple[str, pd.DataFrame]]:
    """Each pilot task's rows; where its family first trained with their ImageNet drop path, those too, apart."""
    out = []
    for folder in sorted(PILOT.iterdir()):
        if not (folder / ROWS_FILE).exists():
            continue
        rows = pd.read_csv(folder / ROWS_FILE)
        out.append((folder.name, rows))
        if (folder / IMAGENET_DROP_PATH_FILE).exists():
            sampled = rows[~rows["arch"].isin(FAMILY)]
            out.append((f"{folder.name} (family at ImageNet drop path)",
                        pd.concat([pd.read_csv(folder / IMAGENET_DROP_PATH_FILE), sampled], ignore_index=True)))
    return out


def summary() -> pd.DataFrame:
    """One table: the pilot's tasks, then the earlier studies' references (tasks tried before the pilot)."""
    pilots = pilot_rows()
    studies = [(f"{task} (bench/results/{study})", study_rows(study)) for task, study in EARLIER_STUDIES.items()]
    return pd.DataFrame([row for task, rows in pilots + studies for row in task_summary(task, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", choices=sorted(RECIPES), default=[], help="repeatable")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--archs", type=int, default=3, help="networks sampled from the default space (default 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary", action="store_true", help="only write the table from the rows kept")
    args = parser.parse_args()
    configure_threads(args.threads)
    if not args.summary:
        for task in args.task:
            run_task(task, args.seeds, args.archs)
    save_table(summary(), RESULTS / "task_pilot.csv", digits=4)


if __name__ == "__main__":
    main()
