"""Latency model accuracy: 50 seeded random configs of the default space, predicted from a profiled table
against their measured end-to-end median, for each runtime.

Per runtime: profile the space on this machine (`fatnas.estimate.latency.profile_space`, timed), then
measure each config whole, in rounds alternating with the table's reference network (fat_b0)
as the profile did; measured ms = the median ratio x the profile's reference median, so host
drift between the two phases cancels (the raw absolute medians are in the rows file too). No
config of the benchmark was timed whole while profiling (checked against the calibration set).
Saved to bench/results/latency_model_bench_<runtimes>.csv (summary), ..._rows.csv and
latency_table_<runtime>.json.

    python bench/latency_model_bench.py --runtimes torch --configs 50
    python bench/latency_model_bench.py --runtimes onnxruntime --configs 50
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd
import torch
from tqdm import tqdm

from fatnas.estimate.latency import CALIBRATION_SEED, ProfileSettings, RelativeTimer, profile_space, sample_configs
from fatnas.model.network import FAT
from fatnas.model.space import load_space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime"])
    parser.add_argument("--space", default="fat")
    parser.add_argument("--configs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per measured config")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: bench/results/latency_model_bench_<runtimes>.csv")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"latency_model_bench_{'_'.join(args.runtimes)}.csv"
    space = load_space(args.space)
    configs = sample_configs(space, args.configs, args.seed)
    assert args.seed != CALIBRATION_SEED
    rows, summary = [], []
    for runtime in args.runtimes:
        settings = ProfileSettings(device=args.device, runtime=runtime, threads=args.threads)
        bar = tqdm(desc=f"profile {runtime}", unit="part")
        table = profile_space(space, settings,
                              progress=lambda done, total: (setattr(bar, "total", total), bar.update(1)))
        bar.close()
        calibrated = {str(c["config"]) for c in table.meta["calibration"]["networks"]}
        assert not any(str(c.to_dict()) in calibrated for c in configs), "a benchmark config was a calibration network"
        table.save(args.out.with_name(f"latency_table_{runtime}.json"))
        timer = RelativeTimer(settings, space.resolution, 3)
        errors = []
        start = time.perf_counter()
        for i, cfg in enumerate(tqdm(configs, desc=f"measure {runtime}")):
            torch.manual_seed(0)
            ratio = timer.ratio(FAT(cfg), (3, space.resolution, space.resolution), args.rounds)
            measured = ratio * table.reference_ms
            predicted = table.predict_ms(cfg)
            errors.append(100 * (predicted - measured) / measured)
            rows.append(dict(runtime=runtime, config=i, predicted_ms=predicted, measured_ms=measured,
                             measured_ratio=ratio, reference_ms_now=statistics.median(timer.samples[-args.rounds:]),
                             error_percent=errors[-1]))
        summary.append(dict(runtime=runtime, device=args.device, threads=args.threads, res=space.resolution,
                            parts=len(table.parts), profile_s=table.meta["profile_seconds"],
                            measure_s=round(time.perf_counter() - start, 1), factor=table.factor,
                            configs=len(configs),
                            within_10_percent=100 * sum(abs(e) <= 10 for e in errors) / len(errors),
                            rmse_percent=math.sqrt(statistics.fmean(e * e for e in errors)),
                            mean_error_percent=statistics.fmean(errors)))
        pd.DataFrame(rows).to_csv(args.out.with_name(args.out.stem + "_rows.csv"), index=False)
    save_table(pd.DataFrame(summary), args.out, digits=2)


if __name__ == "__main__":
    main()
