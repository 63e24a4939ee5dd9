"""What the supernet's scores rank by, over every draw `supernet_ablation.py` kept; nothing is trained or scored.

Reads bench/results/supernet_ablation_scores.csv (each study network's score under each supernet and setting)
and, for the default scoring (512 recalibration images, the validation images, no fine-tuning):
- every draw (supernet, recalibration seed) alone, each supernet's draws rank-averaged, and all draws
  rank-averaged, with the study's rank statistics against its reference (supernet_draws.csv);
- Kendall tau between each architecture dimension (per stage, plus head dimension and FLOPs) and the
  reference, the rank-averaged supernet and the default proxy: what each rewards (supernet_dimensions.csv).

    python bench/supernet_draws.py sn_nodistill1 sn_nodistill1_s1
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common import RESULTS, save_table

# isort: split
import pandas as pd
from scipy.stats import kendalltau
from supernet_ablation import SCORES, SHOWN, study_inputs

from fatnas.study.fidelity.analysis import rank_statistics

DIMENSIONS = ["widths", "depths", "heads", "kernels", "windows", "ffn_ratios", "ffn_kernels"]


def default_draws(scores: pd.DataFrame, supernets: list[str]) -> pd.DataFrame:
    """Accuracy by network (rows) and draw (columns: supernet, recalibration seed) under the default scoring."""
    keep = (scores["supernet"].isin(supernets) & (scores["recal_images"] == 512) & (scores["eval"] == "val")
            & (scores["finetune_steps"] == 0))
    return scores[keep].pivot_table(index="arch", columns=["supernet", "recal_seed"], values="accuracy")


def rank_mean(draws: pd.DataFrame) -> pd.Series:
    return draws.rank().mean(axis=1)


def draw_rows(draws: pd.DataFrame, statistics) -> list[dict]:
    """One row per draw, per supernet (its draws rank-averaged), and for all draws rank-averaged."""
    rows = [dict(scores=f"{sn} recal seed {seed}", draws=1, **statistics(draws[(sn, seed)]))
            for sn, seed in draws.columns]
    for sn in draws.columns.get_level_values(0).unique():
        rows.append(dict(scores=f"{sn} rank mean", draws=draws[sn].shape[1], **statistics(rank_mean(draws[sn]))))
    rows.append(dict(scores="all rank mean", draws=draws.shape[1], **statistics(rank_mean(draws))))
    return rows


def dimension_table(archs: dict, sizes: pd.DataFrame) -> pd.DataFrame:
    """Every network's value of each dimension per stage, its head dimensions and FLOPs."""
    rows = {}
    for arch, cfg in archs.items():
        row = {f"{key}[{stage}]": value for key in DIMENSIONS for stage, value in enumerate(getattr(cfg, key))}
        row.update({f"head_dim[{s}]": w / h for s, (w, h) in enumerate(zip(cfg.widths, cfg.heads))})
        row["flops"] = sizes.loc[arch, "flops"]
        rows[arch] = row
    return pd.DataFrame(rows).T.astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("supernets", nargs="+", help="supernet ids in the scores table")
    parser.add_argument("--study", type=Path, default=RESULTS / "fidelity_study_upper")
    args = parser.parse_args()
    settings, sizes, archs, truth, others = study_inputs(args.study)
    draws = default_draws(pd.read_csv(SCORES), args.supernets)
    if draws.empty:
        raise SystemExit(f"error: no default-scoring rows for {args.supernets} in {SCORES}")

    def statistics(scores: pd.Series) -> dict:
        stats = rank_statistics(scores, truth, sizes, others, settings)
        return {k: v for k, v in stats.items() if k in SHOWN or k.startswith("minus_proxy")}

    table = pd.DataFrame(draw_rows(draws, statistics))
    save_table(table, RESULTS / "supernet_draws.csv", digits=3)
    dims = dimension_table(archs, sizes).reindex(truth.index)
    columns = {"reference": truth, "supernet_rank_mean": rank_mean(draws), "default_proxy": others["proxy"]}
    rewards = pd.DataFrame({name: {d: kendalltau(dims[d], values.reindex(truth.index)).statistic for d in dims}
                            for name, values in columns.items()}).rename_axis("dimension").reset_index()
    rewards = rewards.sort_values("reference", ascending=False)
    save_table(rewards, RESULTS / "supernet_dimensions.csv", digits=3)


if __name__ == "__main__":
    main()
