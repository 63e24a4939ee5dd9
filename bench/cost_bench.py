"""Benchmark the analytic cost model against fvcore tracing on random realistic FAT configs.

For each drawn config: the analytic cost (`fatnas.estimate.cost.analytic_cost`, timed over many calls
for a stable per-call figure), the model build (`FAT(cfg)`) and the fvcore trace
(`fatnas.estimate.cost.fvcore_cost`), and whether the two agree exactly (params and every operator's
FLOPs; FLOPs are fvcore totals, one multiply-add = one FLOP).

    .venv/bin/python bench/cost_bench.py --configs 40
    .venv/bin/python bench/cost_bench.py --configs 200 --res 224 --random-res-frac 0.25

Writes the summary table to --out and the per-config table beside it (`*_per_config.csv`).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import timeit
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fatnas.estimate.cost import analytic_cost, fvcore_cost  # noqa: E402
from fatnas.model.config import FATConfig, describe  # noqa: E402
from fatnas.model.counting import OPERATORS  # noqa: E402
from fatnas.model.network import FAT  # noqa: E402

WIDTH_STEP = 16  # widths are multiples of 16 up to MAX_WIDTH, like the published family
MAX_WIDTH = 512
MAX_TOTAL_DEPTH = 16


def draw_config(rng: random.Random) -> FATConfig:
    """A random valid config from ranges around the published family (b0..b3 and beyond)."""
    widths = sorted(rng.randrange(WIDTH_STEP, MAX_WIDTH + 1, WIDTH_STEP) for _ in range(4))
    heads = []
    for c in widths:
        divisors = [h for h in range(1, 33) if c % h == 0 and c // h >= 8]
        heads.append(rng.choice(divisors))
    while True:
        depths = [rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 10), rng.randint(1, 4)]
        if sum(depths) <= MAX_TOTAL_DEPTH:
            break
    return FATConfig(
        widths=widths,
        depths=depths,
        heads=heads,
        kernels=[rng.choice([3, 5, 7, 9]) for _ in range(4)],
        windows=sorted((rng.choice([1, 2, 4, 8, 16]) for _ in range(4)), reverse=True),
        ffn_ratios=[rng.choice([2.0, 3.0, 4.0]) for _ in range(4)],
        ffn_kernels=[rng.choice([3, 5, 7]) for _ in range(4)],
        num_classes=1000,
        drop_path_rate=0.1,
    )


def draw_res(rng: random.Random, res: int, random_frac: float) -> tuple[int, int]:
    if rng.random() >= random_frac:
        return res, res
    return rng.randint(64, 320), rng.randint(64, 320)


def time_analytic(cfg: FATConfig, size: tuple[int, int], repeats: int) -> float:
    """Seconds per analytic_cost call: best of `repeats` rounds of timeit's autorange (>= 0.2 s each)."""
    timer = timeit.Timer(lambda: analytic_cost(cfg, size))
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=repeats, number=number)) / number


def bench_one(cfg: FATConfig, size: tuple[int, int], repeats: int) -> dict:
    analytic_s = time_analytic(cfg, size, repeats)
    analytic = analytic_cost(cfg, size)

    t0 = time.perf_counter()
    model = FAT(cfg)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    measured = fvcore_cost(model, cfg.in_chans, size)
    trace_s = time.perf_counter() - t0

    op_diffs = {op: abs(analytic.flops_by_operator.get(op, 0) - measured.flops_by_operator.get(op, 0))
                for op in set(OPERATORS) | set(measured.flops_by_operator)}
    return {
        "config": describe(cfg),
        "height": size[0],
        "width": size[1],
        "blocks": cfg.num_blocks,
        "params": measured.params,
        "flops": measured.flops,
        "analytic_us": analytic_s * 1e6,
        "build_ms": build_s * 1e3,
        "fvcore_trace_ms": trace_s * 1e3,
        "build_trace_ms": (build_s + trace_s) * 1e3,
        "params_abs_diff": abs(analytic.params - measured.params),
        "flops_abs_diff": abs(analytic.flops - measured.flops),
        "max_op_abs_diff": max(op_diffs.values()),
        "agree": analytic.params == measured.params
                 and analytic.flops_by_operator == measured.flops_by_operator,
    }


def summarize(per_config: pd.DataFrame) -> pd.DataFrame:
    analytic_ms = per_config["analytic_us"].median() / 1e3
    trace_ms = per_config["fvcore_trace_ms"].median()
    build_trace_ms = per_config["build_trace_ms"].median()
    return pd.DataFrame([{
        "configs": len(per_config),
        "agree": int(per_config["agree"].sum()),
        "median_analytic_us": analytic_ms * 1e3,
        "median_build_ms": per_config["build_ms"].median(),
        "median_fvcore_trace_ms": trace_ms,
        "median_build_trace_ms": build_trace_ms,
        "ratio_trace_over_analytic": trace_ms / analytic_ms,
        "ratio_build_trace_over_analytic": build_trace_ms / analytic_ms,
        "median_per_config_ratio": (per_config["build_trace_ms"] / (per_config["analytic_us"] / 1e3)).median(),
        "max_params_abs_diff": int(per_config["params_abs_diff"].max()),
        "max_flops_abs_diff": int(per_config["flops_abs_diff"].max()),
        "max_op_flops_abs_diff": int(per_config["max_op_abs_diff"].max()),
        "median_params_M": per_config["params"].median() / 1e6,
        "median_GFLOPs": per_config["flops"].median() / 1e9,
        "threads": torch.get_num_threads(),
    }])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", type=int, default=200, help="number of random configs (default 200)")
    parser.add_argument("--res", type=int, default=224, help="input resolution for most configs (default 224)")
    parser.add_argument("--random-res-frac", type=float, default=0.25,
                        help="fraction of configs drawn at a random (possibly non-square) size in 64..320")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timeit rounds for the analytic cost (best of)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/cost_bench.csv"))
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    cases = [(draw_config(rng), draw_res(rng, args.res, args.random_res_frac)) for _ in range(args.configs)]

    rows = [bench_one(cfg, size, args.repeats) for cfg, size in tqdm(cases, desc="configs", unit="cfg")]
    per_config = pd.DataFrame(rows)
    summary = summarize(per_config)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    per_config_path = args.out.with_name(args.out.stem + "_per_config.csv")
    summary.to_csv(args.out, index=False)
    per_config.to_csv(per_config_path, index=False)

    with pd.option_context("display.width", 200, "display.max_columns", None, "display.float_format", "{:.4g}".format):
        print("FLOPs: fvcore total, 1 multiply-add = 1 FLOP")
        print(summary.T.to_string(header=False))
    print(f"wrote {args.out} and {per_config_path}")
    if not per_config["agree"].all():
        bad = per_config[~per_config["agree"]]
        columns = ["config", "height", "width", "params_abs_diff", "flops_abs_diff"]
        print(f"{len(bad)} config(s) disagree:\n{bad[columns]}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
