"""What every benchmark does with its table: print it and save it as CSV under bench/results/."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"


def save_table(table: pd.DataFrame, out: Path, *, digits: int | None = None) -> None:
    """Print `table` (floats with `digits` decimals, if given) and write it to `out`."""
    float_format = None if digits is None else (lambda v: f"{v:.{digits}f}")
    print(table.to_string(index=False, float_format=float_format))
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"saved {out}")
