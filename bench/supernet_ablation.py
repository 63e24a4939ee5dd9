"""How well trained supernets rank a fidelity study's networks, under different scoring settings.

Each trained supernet (a `fatnas supernet train` run) scores the study's networks with inherited weights:
BatchNorm recalibrated on `--recal-images` training images, evaluated on `--eval` images (`val`: the held-out
validation part; `train:N`: N training images the recalibration did not use), after `--finetune-steps` steps of
training each sub-network on its own from the inherited weights (0: none, the default scoring). Every row is
one supernet and one scoring setting, with the study's own rank statistics against its reference: Kendall tau
and its 90% interval, partial tau on log size, band tau, and paired differences (with intervals) to the default
proxy and to each supernet the study scored itself (`minus_<id>`). The recipe of each supernet (sampling,
distillation, kernel transformation, epochs, training seconds) is read from its run.yaml. Saved to
bench/results/supernet_ablation.csv (rows of earlier calls for other supernets or settings are kept).

    python bench/supernet_ablation.py sn_a sn_b --recal-images 128 512 2048 --eval val train:4000
    python bench/supernet_ablation.py sn_a --finetune-steps 0 16 48
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd
import torch
from scipy.stats import kendalltau

from fatnas.estimate.data import proxy_images
from fatnas.estimate.proxy import configure_threads, evaluate_network
from fatnas.model.config import FATConfig
from fatnas.runs.store import open_run
from fatnas.study.fidelity.analysis import arch_sizes, rank_statistics, study_reference
from fatnas.study.fidelity.jobs import read_rows
from fatnas.study.fidelity.settings import StudySettings
from fatnas.supernet import load_supernet
from fatnas.supernet.score import SubnetScorer

OUT = RESULTS / "supernet_ablation.csv"
SCORES = RESULTS / "supernet_ablation_scores.csv"  # every network's score by every supernet and setting
AGREEMENT = RESULTS / "supernet_ablation_agreement.csv"  # Kendall tau between the settings scored in one call
KEY = ["supernet", "recal_images", "recal_seed", "eval", "finetune_steps"]


def study_inputs(study: Path) -> tuple[StudySettings, pd.DataFrame, dict[str, FATConfig], pd.Series, dict]:
    """The study's settings, sizes, network configs, reference values, and the estimators every row is compared
    with in pairs: the default proxy's accuracy and the accuracy of each supernet the study scored itself."""
    run = open_run(str(study))
    settings = StudySettings.from_meta(run.read_meta())
    table = read_rows(run)
    reference = study_reference(table, settings)
    configs = table.drop_duplicates("arch").set_index("arch")["config"]
    archs = {a: FATConfig.from_dict(json.loads(configs[a])) for a in reference.values.index}
    main = table[(table["measure"] == settings.main_low) & (table["metric"] == "accuracy")]
    others = {"proxy": main.groupby("arch")["value"].mean()}
    for spec in settings.scorers:
        rows = table[(table["measure"] == spec) & (table["metric"] == "accuracy")]
        others[spec.split(":", 1)[1]] = rows.groupby("arch")["value"].mean()
    return settings, arch_sizes(table), archs, reference.values, others


def train_eval_images(scorer: SubnetScorer, data, count: int, recal: int, seed: int):
    """`count` training images after the recalibration's `recal` in the scorer's seeded order."""
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(seed))[recal:recal + count]
    mean, std = data.normalization(scorer.recal.pixels.device)
    return proxy_images(data.train_x[order], data.train_y[order], mean, std, scorer.res, scorer.recal.pixels.device)


def score_all(supernet_id: str, recal: int, recal_seed: int | None, eval_spec: str, finetune_steps: int,
              archs: dict[str, FATConfig]) -> tuple[pd.DataFrame, dict]:
    """Every study network's score by one supernet, or by a few-shot group `ID1+ID2+...` (each network by the
    member whose sub-space holds its values where the members' spaces differ)."""
    members = [load_supernet(member) for member in supernet_id.split("+")]
    data = members[0].task.data()
    scorers = [m.scorer(data, recal_images=recal, val_images=len(data.val_x), finetune_steps=finetune_steps,
                        seed=recal_seed) for m in members]
    images = scorers[0].val
    if eval_spec.startswith("train:"):
        images = train_eval_images(scorers[0], data, int(eval_spec.split(":")[1]), recal, members[0].settings.seed)
    rows, start = [], time.perf_counter()
    for arch, cfg in archs.items():
        scorer = scorers[holder([m.task.space for m in members], cfg)]
        accuracy, loss = evaluate_network(scorer.network(cfg), images)
        rows.append(dict(arch=arch, accuracy=accuracy, neg_loss=-loss))
    seconds = (time.perf_counter() - start) / len(archs)
    meta = members[0].settings.to_dict()
    recipe = dict(sampling=meta["sampling"], random_subnets=meta["random_subnets"], distill=members[0].settings.teacher,
                  budget_only=meta["budget_only"], kernel_transform=meta.get("kernel_transform", False),
                  few_shot=len(members), epochs=meta["epochs"], res=meta["res"],
                  train_seconds=sum(open_run(m.run.id).read_meta().get("train_seconds") or 0 for m in members),
                  eval_images=len(images), seconds_per_arch=seconds)
    return pd.DataFrame(rows).set_index("arch"), recipe


def holder(spaces: list, cfg: FATConfig) -> int:
    """The index of the space holding `cfg`'s values at every (key, stage) where the spaces' choices differ."""
    split = [(key, stage) for key in spaces[0].choices for stage in range(len(spaces[0].choices[key]))
             if len({space.choices[key][stage] for space in spaces}) > 1]
    for index, space in enumerate(spaces):
        if all(_value(cfg, key, stage) in space.choices[key][stage] for key, stage in split):
            return index
    raise ValueError(f"no member of the few-shot group holds {cfg}")


def _value(cfg: FATConfig, key: str, stage: int):
    if key == "head_dims":
        return cfg.widths[stage] // cfg.heads[stage]
    return getattr(cfg, key)[stage]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("supernets", nargs="+", help="supernet run ids (or run folders)")
    parser.add_argument("--study", type=Path, default=RESULTS / "fidelity_study_upper")
    parser.add_argument("--recal-images", type=int, nargs="+", default=[512])
    parser.add_argument("--eval", nargs="+", default=["val"], help="val, or train:N")
    parser.add_argument("--finetune-steps", type=int, nargs="+", default=[0])
    parser.add_argument("--recal-seeds", type=int, nargs="+", default=[None],
                        help="seeds of the recalibration images (default: the supernet's own)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    configure_threads(args.threads)
    settings, sizes, archs, truth, others = study_inputs(args.study)
    rows, per_arch = [], []
    for supernet_id in args.supernets:
        for recal in args.recal_images:
            for seed, eval_spec, steps in itertools.product(args.recal_seeds, args.eval, args.finetune_steps):
                scores, recipe = score_all(supernet_id, recal, seed, eval_spec, steps, archs)
                key = dict(supernet=supernet_id, recal_images=recal, recal_seed=seed, eval=eval_spec,
                           finetune_steps=steps)
                per_arch.append(scores.reset_index().assign(**key))
                for metric in ("accuracy", "neg_loss"):
                    stats = rank_statistics(scores[metric], truth, sizes, others, settings)
                    rows.append(dict(**key, metric=metric,
                                     **recipe, **{k: v for k, v in stats.items() if k in SHOWN or
                                                  k.startswith("minus_") and not k.startswith("minus_params")}))
                print(pd.DataFrame(rows[-2:]).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    save_table(merged(pd.DataFrame(rows), OUT, KEY + ["metric"]), OUT, digits=3)
    scores = pd.concat(per_arch, ignore_index=True)
    save_table(merged(scores, SCORES, KEY + ["arch"]), SCORES, digits=4)
    if len(per_arch) > 1:
        save_table(agreement(scores), AGREEMENT, digits=3)


def merged(table: pd.DataFrame, path: Path, key: list[str]) -> pd.DataFrame:
    """`table` with the rows of `path` whose keys it does not hold (earlier calls' supernets and settings)."""
    if not path.exists():
        return table
    old = pd.read_csv(path)
    old["finetune_steps"] = old.get("finetune_steps", pd.Series(0, index=old.index)).fillna(0).astype(int)
    old["recal_seed"] = old.get("recal_seed", pd.Series(None, index=old.index, dtype=object))
    as_text = lambda frame: [tuple(r) for r in frame[key].astype(str).replace("nan", "None").to_numpy()]  # noqa: E731
    keys = set(as_text(table))
    return pd.concat([old[[r not in keys for r in as_text(old)]], table], ignore_index=True)


def agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau between every two scorings of this call (by accuracy): how well the estimator repeats itself."""
    scores = scores.assign(setting=scores[KEY].astype(str).agg(" ".join, axis=1))
    wide = scores.pivot(index="arch", columns="setting", values="accuracy")
    return pd.DataFrame([dict(a=a, b=b, kendall_tau=kendalltau(wide[a], wide[b]).statistic, archs=len(wide))
                         for a, b in itertools.combinations(wide.columns, 2)])


SHOWN = ["kendall_tau", "tau_low", "tau_high", "partial_tau", "partial_low", "partial_high", "band_tau"]

if __name__ == "__main__":
    main()
