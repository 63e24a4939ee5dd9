"""What every benchmark shares: the OpenMP wait policy of cli.py, and printing and saving its table."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

# as in cli.py: OpenMP threads that spin while waiting stall badly when other processes share the cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def save_table(table: pd.DataFrame, out: Path, *, digits: int | None = None) -> None:
    """Print `table` (floats with `digits` decimals, if given) and write it to `out`."""
    float_format = None if digits is None else (lambda v: f"{v:.{digits}f}")
    print(table.to_string(index=False, float_format=float_format))
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"saved {out}")


def append_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Append `rows` to the CSV file at `path` (its header first if new), under a lock on the file, so that
    benchmark processes appending at once lose no row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            new = handle.seek(0, os.SEEK_END) == 0
            pd.DataFrame(rows, columns=columns).to_csv(handle, header=new, index=False)
            handle.flush()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
