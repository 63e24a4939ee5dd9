"""The fmnist10 reference study: networks sampled within 2 GFLOPs and the published family, each with 3 seeds.

The networks are fat_b0, fat_b1, fat_b2 (fat_b2, at 2.15 GFLOPs fvcore total at 224 px, added by name) and the
first `--archs` networks the fidelity studies sample from the default space within 2 GFLOPs (arch00, ...).
Each trains with the task pilot's fmnist10 recipe (bench/task_pilot.py: all 10 classes, 28 px, 16,384 images,
6 epochs, crops and flips, scored on the 10,000 test images), one thread. The pilot's rows are the same
networks and recipe, so the study starts from them (marked `trainer=plain`: the trainer before the CPU fast
path, which computes the same function). Rows go to bench/results/fidelity_study_fmnist10/fidelity.csv as
each training ends, seed by seed, so a stopped study resumes on any clone and a partial one already covers
every network; `--shard K/N` runs every N-th job from the K-th, so N processes (one per core) share the work.
The summary (bench/results/fidelity_study_fmnist10.csv) is the pilot's table for these rows: per metric the
family's means and gaps in pooled seed stds, the seed std, the spread std and the mean pairwise seed tau.
`--latency` re-times every network in one process against fat_b0 (latency.csv); then
bench/results/fidelity_study_fmnist10_beats_family.csv gives, per metric, the share of sampled networks faster
than fat_b0 (and fat_b1) whose seed mean beats it by at least 2 pooled seed stds.
Accuracies are on 10-class Fashion-MNIST at 28 px, not ImageNet.

    python bench/reference_study.py --archs 30 --seeds 0 1 2 --shard 0/2 &
    python bench/reference_study.py --archs 30 --seeds 0 1 2 --shard 1/2 &
    python bench/reference_study.py --summary --latency
"""
from __future__ import annotations

import argparse
import json

from common import RESULTS, append_rows, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import numpy as np
import pandas as pd
from task_pilot import FAMILY, GAP_STDS, PILOT, ROWS_FILE, pilot_networks, task_summary, train_one
from tqdm import tqdm

from fatnas.estimate.latency.measure import ReferenceClock, reference_network
from fatnas.estimate.proxy import configure_threads
from fatnas.estimate.tasks import load_task
from fatnas.model.config import FATConfig
from fatnas.model.network import FAT
from fatnas.study.fidelity.specs import CSV_COLUMNS

TASK = "fmnist10"
STUDY = RESULTS / "fidelity_study_fmnist10"
COLUMNS = [*CSV_COLUMNS, "cpu_seconds", "trainer"]


def study_rows() -> pd.DataFrame:
    """The study's rows; on first use, the pilot's rows of the same networks and recipe."""
    path = STUDY / ROWS_FILE
    if not path.exists():
        pilot = pd.read_csv(PILOT / TASK / ROWS_FILE).assign(trainer="plain")
        append_rows(path, pilot.to_dict("records"), COLUMNS)
    return pd.read_csv(path)


def parse_shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    k, n = int(index), int(count)
    if not 0 <= k < n:
        raise SystemExit(f"--shard {text!r}: expected K/N with 0 <= K < N")
    return k, n


def run(archs: int, seeds: list[int], shard: tuple[int, int]) -> None:
    networks = pilot_networks(archs)
    done = set(zip(study_rows()["arch"], study_rows()["seed"]))
    jobs = [(seed, arch) for seed in seeds for arch in networks]
    mine = [job for i, job in enumerate(jobs) if i % shard[1] == shard[0] and (job[1], job[0]) not in done]
    if not mine:
        return
    data = load_task(TASK)
    for n, (seed, arch) in enumerate(mine, start=1):
        rows = [dict(row, trainer="fast") for row in train_one(TASK, arch, networks[arch], seed, data)]
        append_rows(STUDY / ROWS_FILE, rows, COLUMNS)
        print(f"{n}/{len(mine)} {arch} seed {seed}: accuracy {rows[0]['value']:.4f}, loss {rows[1]['value']:.4f}, "
              f"{rows[0]['seconds']:.0f} s", flush=True)


def retime(rows: pd.DataFrame) -> pd.DataFrame:
    """Every network of the study timed in this one process, interleaved with fat_b0 (batch 1, 224 px, one
    thread, as a search times its candidates): ratio to fat_b0 and ms on one scale (fat_b0's median over all)."""
    configs = rows.drop_duplicates("arch").set_index("arch")["config"]
    clock = ReferenceClock(reference_network(3), res=224, in_chans=3, threads=1, warmup=5, repeats=20)
    ratios = {arch: clock.measure(FAT(FATConfig.from_dict(json.loads(text)))).ratio
              for arch, text in tqdm(configs.items(), total=len(configs), desc="latency")}
    return pd.DataFrame(dict(arch=list(ratios), ratio_to_fat_b0=list(ratios.values()),
                             latency_ms=[r * clock.reference_ms for r in ratios.values()]))


def beats_family(rows: pd.DataFrame, latency: pd.DataFrame) -> list[dict]:
    """Per metric and published network: the share of sampled networks faster than it (re-timed) whose seed mean
    beats its own by at least GAP_STDS pooled seed stds (networks with every seed of the study only)."""
    out = []
    speed = latency.set_index("arch")["ratio_to_fat_b0"]
    for metric, sign in (("accuracy", 1.0), ("loss", -1.0)):
        table = rows[rows["metric"] == metric].pivot_table(index="arch", columns="seed", values="value").dropna()
        seed_std = float(np.sqrt(table.var(axis=1, ddof=1).mean()))
        means, sampled = table.mean(axis=1), [a for a in table.index if a not in FAMILY]
        for name in ("fat_b0", "fat_b1"):
            if name not in means or name not in speed:
                continue
            faster = [a for a in sampled if speed.get(a, np.inf) < speed[name]]
            wins = [a for a in faster if sign * (means[a] - means[name]) >= GAP_STDS * seed_std]
            out.append(dict(metric=metric, published=name, sampled=len(sampled), faster=len(faster),
                            beat_by_2_stds=len(wins), share=len(wins) / max(len(sampled), 1),
                            pooled_seed_std=seed_std, winners=" ".join(wins)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30, help="networks sampled within 2 GFLOPs (default 30)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shard", default="0/1", help="K/N: this process runs every N-th job from the K-th")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--summary", action="store_true", help="only write the table from the rows kept")
    parser.add_argument("--latency", action="store_true",
                        help="re-time every network in this process (latency.csv), then the share beating the family")
    args = parser.parse_args()
    configure_threads(args.threads)
    if not args.summary:
        run(args.archs, args.seeds, parse_shard(args.shard))
    rows = study_rows()
    save_table(pd.DataFrame(task_summary(TASK, rows)), RESULTS / "fidelity_study_fmnist10.csv", digits=4)
    if args.latency:
        save_table(retime(rows), STUDY / "latency.csv", digits=4)
    if (STUDY / "latency.csv").exists():
        save_table(pd.DataFrame(beats_family(rows, pd.read_csv(STUDY / "latency.csv"))),
                   RESULTS / "fidelity_study_fmnist10_beats_family.csv", digits=4)


if __name__ == "__main__":
    main()
