"""Training throughput with glibc handing freed tensor memory back to the OS (its default) or keeping it.

Each round starts two fresh processes one after the other, one per setting, in alternating order;
each proxy-trains one network (default proxy settings) and reports its images/s (training time
only). Ratios within a round are side by side on the same, possibly noisy, machine; the table
gives each round and the median ratio. Saved to bench/results/malloc_bench.csv.

    python bench/malloc_bench.py --model fat_b0 --rounds 3
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from common import RESULTS, save_table  # first: it sets the OpenMP wait policy before torch loads

# isort: split
import pandas as pd

CHILD = """
import json, sys
from fatnas.estimate.proxy import ProxySettings, configure_threads, retain_freed_memory, train_proxy
from fatnas.estimate.data import load_dataset
from fatnas.model.variants import resolve_config
if sys.argv[1] == "retain":
    assert retain_freed_memory()
configure_threads(int(sys.argv[3]))
result = train_proxy(resolve_config(sys.argv[2]), load_dataset("fashion-mnist"), ProxySettings())
print(json.dumps({"images_per_second": result.images_per_second}))
"""
SETTINGS = ("default", "retain")


def one_training(setting: str, model: str, threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, setting, model, str(threads)], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fat_b0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for r in range(args.rounds):
        order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
        speeds = {setting: one_training(setting, args.model, args.threads) for setting in order}
        rows.append(dict(round=r, model=args.model, threads=args.threads, default_img_s=speeds["default"],
                         retain_img_s=speeds["retain"], ratio=speeds["retain"] / speeds["default"]))
    table = pd.DataFrame(rows)
    print(f"median ratio retain / default: {statistics.median(table['ratio']):.2f}")
    save_table(table, RESULTS / "malloc_bench.csv")


if __name__ == "__main__":
    main()
