"""The run store: `runs/<run-id>/` with run.yaml, study.db, trials.csv, pareto.csv and configs.

The run's Optuna study (study.db, or the storage run.yaml names) is the source of truth for
trials; the CSV files are rewritten from it after every trial, under the run folder's lock
when several workers share it, so a killed search loses nothing that had finished.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pandas as pd
import yaml

from .._version import __version__ as fatnas_version
from ..documents import load_json, load_text, read_bytes, read_yaml
from ..errors import FatnasError, redact
from ..model.config import FATConfig
from ..paths import (
    FILE_URL_PREFIXES,
    atomic_write_text,
    folder_setting,
    home_dir,
    portable_path,
    portable_record,
    portable_url,
)
from .noise import BAND_FILE, Noise, best_reference, noise_aware_band, with_differences, with_intervals
from .schema import check_meta, check_table

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
OBJECTIVES = (("accuracy", "max"), ("latency_ms", "min"))


_WARNED: set[str] = set()
_HELD = threading.local()  # run folders whose lock this thread holds (the lock is re-entrant)


class RunError(FatnasError):
    """A missing, malformed, damaged or clashing run; the message names the run, the file and what is wrong."""


def warn(message: str) -> None:
    """One line on stderr (once per process): what a listing skipped, and why."""
    line = f"warning: {redact(' '.join(message.split()))}"
    if line not in _WARNED:
        _WARNED.add(line)
        print(line, file=sys.stderr)


def runs_root() -> Path:
    """Where runs live: $FATNAS_RUNS_DIR, else `runs/` in $FATNAS_HOME or the current directory."""
    return folder_setting("FATNAS_RUNS_DIR", home_dir() / "runs")


def new_run_id(prefix: str = "search") -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.fullmatch(run_id):  # fullmatch: `$` would let a trailing newline through
        raise RunError(f"run id {run_id!r} is malformed; use letters, digits, '_', '-', '.' (at most 100)")
    return run_id


@dataclass(frozen=True)
class Run:
    """One run folder."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def default_storage(self) -> str:
        """The run's own SQLite study, `study.db` in its folder."""
        return f"sqlite:///{(self.path / 'study.db').resolve()}"

    @property
    def storage_url(self) -> str:
        """Where the run's study lives: run.yaml's `storage` (its password masked), else study.db."""
        recorded = self.read_meta().get("storage") if (self.path / "run.yaml").is_file() else None
        return recorded or self.default_storage

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run folder's lock: one process at a time rewrites its files (re-entrant in a thread)."""
        held = _HELD.__dict__.setdefault("paths", set())
        key = str(self.path.resolve())
        if key in held:
            yield
            return
        with self._lock_file() as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _lock_file(self) -> io.FileIO:
        """The run folder's `.lock`, a regular file (a folder or symlink there is a damaged run, not followed)."""
        try:
            fd = os.open(self.path / ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise self.damaged(".lock", f"cannot be opened as the run's lock file ({exc.strerror or exc}); "
                                        "remove it") from None
        return io.FileIO(fd, "w")

    def damaged(self, name: str, what: str) -> RunError:
        return RunError(f"run {self.id!r}: {self.path / name} {what}")

    def read_meta(self) -> dict[str, Any]:
        """run.yaml as a mapping checked field by field (runs/schema.py); a missing, unreadable, malformed or
        damaged one is a RunError naming what is wrong."""
        meta_path = self.path / "run.yaml"
        if not meta_path.is_file():
            raise RunError(f"run {self.id!r} has no run.yaml; it is not a fatnas run folder")
        meta = read_yaml(meta_path, f"run {self.id!r}: {meta_path}", RunError)
        return check_meta(meta, lambda what: self.damaged("run.yaml", what))

    def write_meta(self, meta: dict[str, Any]) -> None:
        atomic_write_text(self.path / "run.yaml", yaml.safe_dump(meta, sort_keys=False))

    def record(self, kind: str, fields: dict[str, Any], *, flop_convention: str, dataset: str,
               argv: list[str] | None = None) -> None:
        """Write run.yaml for a new run: its kind, command (as typed, no password, no machine path),
        `fields`, versions, hardware and conventions."""
        meta = dict(id=self.id, kind=kind, command=command_line(argv if argv is not None else sys.argv), **fields,
                    **environment_info())
        meta["flop_convention"] = flop_convention
        meta["accuracy_note"] = f"proxy accuracy on {dataset}; not ImageNet accuracy"
        self.write_meta(portable_record(meta))

    def update_meta(self, **changes: Any) -> None:
        """Change some fields of run.yaml, under the run folder's lock (workers may update it at once)."""
        with self.lock():
            meta = self.read_meta()
            meta.update(changes)
            self.write_meta(meta)

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        atomic_write_text(self.path / name, table.to_csv(index=False))

    def append_rows(self, name: str, rows: list[dict[str, Any]], columns: list[str],
                    key: list[str] | None = None) -> pd.DataFrame:
        """Add rows to a CSV file under the run folder's lock, so that processes appending at once lose none;
        rows whose `key` columns are already there are not added twice. Returns the whole table."""
        with self.lock():
            table = self.read_table(name)
            table = pd.concat([t for t in (table, pd.DataFrame(rows, columns=columns)) if not t.empty],
                              ignore_index=True) if rows else table
            if key and not table.empty:
                table = table.drop_duplicates(subset=key, keep="first", ignore_index=True)
            self.write_table(name, table if not table.empty else pd.DataFrame(columns=columns))
            return table

    def read_table(self, name: str) -> pd.DataFrame:
        """One CSV file of the run (empty if missing), checked column by column (runs/schema.py); a damaged one is
        a RunError naming the file."""
        path = self.path / name
        if not path.is_file():
            return pd.DataFrame()
        data = read_bytes(path, f"run {self.id!r}: {path}", RunError)
        if not data:
            raise self.damaged(name, "is empty (0 bytes, not even a header; damaged?)")
        text = load_text(data, f"run {self.id!r}: {path}", RunError)
        if not text.endswith("\n"):
            raise self.damaged(name, "ends in the middle of a line (truncated?)")
        if text.strip() in ("", '""'):
            return pd.DataFrame()  # a table with no column, as write_table writes it
        try:
            table = pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise self.damaged(name, f"is not a readable CSV table ({' '.join(str(exc).split())[:150]})") from None
        return check_table(name, table, lambda what: self.damaged(name, what))

    def trials(self) -> pd.DataFrame:
        return self.read_table("trials.csv")

    def state_counts(self) -> dict[str, int]:
        """Trials of trials.csv by state, e.g. {'COMPLETE': 17, 'PRUNED': 3}."""
        return state_counts(self.trials())

    def pareto(self) -> pd.DataFrame:
        return self.read_table("pareto.csv")

    def references(self) -> pd.DataFrame:
        return self.read_table("references.csv")

    def write_config(self, name: str, cfg: FATConfig, source: dict[str, Any]) -> Path:
        path = self.path / "configs" / f"{name}.yaml"
        atomic_write_text(path, yaml.safe_dump({"config": cfg.to_dict(), "source": source}, sort_keys=False))
        return path


def create_run(run_id: str, root: Path | None = None) -> Run:
    """A new, empty run folder; an existing id is an error, also when another process takes it at this moment."""
    path = (root or runs_root()) / check_run_id(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()  # atomic: of two processes making one id, exactly one succeeds
    except FileExistsError:
        bare = "" if (path / "run.yaml").is_file() else \
            " as a folder without run.yaml (a run starting now, or one that never started: remove it then)"
        raise RunError(f"run {run_id!r} already exists in {path.parent}{bare}; pick another --run-id or --resume it"
                       ) from None
    return Run(path)


def _not_a_run(run_id: str, path: Path) -> RunError:
    """The one error of a folder that holds a run's id but no run.yaml (a run that failed to start, say)."""
    return RunError(f"run {run_id!r}: {path} is a folder without run.yaml (a run starting now, or one that never "
                    "started: remove it then); nothing to open")


def new_run(run_id: str | None, prefix: str, record: Callable[[Run], None], root: Path | None = None) -> Run:
    """A new run folder with its run.yaml written by `record(run)`; removed again if that fails."""
    run = create_run(new_run_id(prefix) if run_id is None else run_id, root)  # '' is malformed, not a default
    try:
        record(run)
    except BaseException:
        shutil.rmtree(run.path, ignore_errors=True)
        raise
    return run


def open_run(run_id: str, root: Path | None = None) -> Run:
    """An existing run by id (or path); a missing one lists the known runs."""
    candidate = Path(run_id)
    path = candidate if (candidate / "run.yaml").is_file() else (root or runs_root()) / run_id
    if path.is_dir() and not (path / "run.yaml").is_file() and RUN_ID_PATTERN.fullmatch(run_id):
        raise _not_a_run(run_id, path)
    if not (path / "run.yaml").is_file():
        known = ", ".join(r.id for r in list_runs(root)) or "none"
        raise RunError(f"run {run_id!r} not found in {root or runs_root()}; known runs: {known}")
    return Run(path)


def list_runs(root: Path | None = None) -> list[Run]:
    root = root or runs_root()
    if not root.is_dir():
        return []
    return [Run(p) for p in sorted(root.iterdir()) if (p / "run.yaml").is_file()]


def state_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Rows of a trials table by state (empty table: none)."""
    return trials["state"].value_counts().to_dict() if not trials.empty else {}


def readable_runs(root: Path | None = None, check: Callable[[Run], Any] | None = None) -> Iterator[tuple[Run, Any]]:
    """(run, check(run)) for each run whose files read (default check: run.yaml); a damaged run is
    skipped with a one-line warning on stderr, so that one broken run never hides the others."""
    for run in list_runs(root):
        try:
            yield run, (check or Run.read_meta)(run)
        except FatnasError as exc:
            warn(f"skipped {exc}")


def command_line(argv: list[str]) -> str:
    """The command as its user would type it: `fatnas search ...` (not the path of cli.py or of the
    script), paths relative to the working folder, passwords masked, quoted for a shell."""
    program = Path(argv[0]).name if argv else "fatnas"
    program = "fatnas" if program in ("cli.py", "fatnas", "__main__.py") else portable_path(argv[0])
    words = [_portable_word(word) for word in argv[1:]]
    return shlex.join([program, *(redact(word, one_word=True) for word in words)])


def _portable_word(word: str) -> str:
    """An argument with an absolute path in it (`/x/y`, `--opt=/x/y`, `sqlite:////x/y.db`, `journal:///x/y`) made
    relative to the working folder."""
    head, sep, value = word.partition("=") if word.startswith("--") else ("", "", word)
    if value.startswith("/") and "://" not in value:
        value = portable_path(value)
    elif value.startswith(FILE_URL_PREFIXES):
        value = portable_url(value)
    return f"{head}{sep}{value}"


def pareto_mask(table: pd.DataFrame, objectives: Iterable[tuple[str, str]] = OBJECTIVES) -> pd.Series:
    """True for rows no other row dominates (at least as good in all objectives, better in one)."""
    signs = {"max": -1.0, "min": 1.0}
    cols = [(c, signs[d]) for c, d in objectives]
    values = [[row[c] * s for c, s in cols] for _, row in table.iterrows()]
    mask = []
    for i, a in enumerate(values):
        dominated = any(all(b[k] <= a[k] for k in range(len(a))) and any(b[k] < a[k] for k in range(len(a)))
                        for j, b in enumerate(values) if j != i)
        mask.append(not dominated)
    return pd.Series(mask, index=table.index, dtype=bool)


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """Completed trials on the accuracy-latency front, cheapest first."""
    if trials.empty or "state" not in trials:
        return trials.iloc[0:0]
    done = complete_rows(trials)
    if done.empty:
        return done
    return done[pareto_mask(done)].sort_values("latency_ms").reset_index(drop=True)


def hypervolume(points: Iterable[tuple[float, float]], ref_latency_ms: float, ref_accuracy: float = 0.0) -> float:
    """Area dominated by (accuracy, latency_ms) points, accuracy up and latency down, up to the reference."""
    inside = sorted((lat, acc) for acc, lat in points if lat < ref_latency_ms and acc > ref_accuracy)
    area, best = 0.0, ref_accuracy
    for lat, acc in inside:  # fastest first: each point adds the accuracy it gains over faster ones
        if acc > best:
            area += (ref_latency_ms - lat) * (acc - best)
            best = acc
    return area


def environment_info() -> dict[str, Any]:
    """Versions and hardware to record with every run."""
    import optuna
    import torch

    info: dict[str, Any] = {
        "versions": {"python": sys.version.split()[0], "torch": str(torch.__version__),
                     "optuna": str(optuna.__version__), "fatnas": fatnas_version, "git": _git_commit()},
        "hardware": {"platform": platform.platform(), "cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(),
                     "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
    }
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def trial_config(row: Any) -> FATConfig:
    """The config of one row of trials.csv, pareto.csv or scaling.csv (its `config` cell, JSON)."""
    return FATConfig.from_dict(load_json(row["config"], f"the config of trial {row.get('trial', '?')}"))


def publish_trials(run: Run, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rewrite trials.csv, pareto.csv, band.csv and one config YAML per front member; returns the front.

    Where run.yaml records the estimator's noise, each trial carries its accuracy interval, and the front and
    the band (`noise.noise_aware_band`) their difference from the best published FAT under budget."""
    with run.lock():  # references.csv is also written by the worker that evaluates the published FATs
        recorded = run.references()
        trials, references = one_latency_scale(pd.DataFrame(rows), recorded)
        if not references.empty and not references.equals(recorded):  # rewritten only when the scale moved
            run.write_table("references.csv", references)
    noise = run_noise(run)
    if noise is not None and not trials.empty and "accuracy" in trials:
        trials = with_intervals(trials, noise.std)
    run.write_table("trials.csv", trials)
    front = pareto_front(trials)
    if noise is not None:
        front = publish_band(run, trials, front, noise.std)
    run.write_table("pareto.csv", front)
    keep = set()
    for _, row in front.iterrows():
        name = f"trial_{int(row['trial'])}"
        keep.add(f"{name}.yaml")
        run.write_config(name, trial_config(row), dict(
            run=run.id, trial=int(row["trial"]), proxy_accuracy=float(row["accuracy"]),
            latency_ms=float(row["latency_ms"]), params=int(row["params"]), flops=int(row["flops"])))
    for stale in (run.path / "configs").glob("*.yaml"):
        if stale.name not in keep:
            stale.unlink()
    return front


def one_latency_scale(trials: pd.DataFrame, references: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every measured latency of a run on one scale: its ratio to fat_b0 (timed beside it in its process) times
    fat_b0's run-wide median, the median of the fat_b0 medians its processes had when they timed each network.

    A process's clock is young when it times its first networks (the published FATs, at a run's start) and the
    host's load changes over a run, so ms figures taken at different moments disagree; ratios do not. Rows with
    no ratio (a latency table's predictions, runs made before ratios were kept) are left as they are."""
    tables = [t.copy() for t in (trials, references)]
    scales = [t["latency_reference_ms"] for t in tables if "latency_reference_ms" in t and "latency_ratio" in t]
    values = pd.concat(scales).dropna() if scales else pd.Series(dtype=float)
    if values.empty:
        return tables[0], tables[1]
    scale = float(values.median())
    for table in tables:
        if "latency_ratio" in table:
            timed = table["latency_ratio"].notna()
            table.loc[timed, "latency_ms"] = table.loc[timed, "latency_ratio"] * scale
    return tables[0], tables[1]


def run_noise(run: Run) -> Noise | None:
    """The accuracy noise run.yaml records (`noise:`), or None where the run has none (yet)."""
    if not (run.path / "run.yaml").is_file():
        return None
    return Noise.from_dict(run.read_meta().get("noise"))


def publish_band(run: Run, trials: pd.DataFrame, front: pd.DataFrame, std: float) -> pd.DataFrame:
    """Write band.csv from `trials` (with intervals); returns the front with its intervals and differences."""
    done = complete_rows(trials)
    band = noise_aware_band(done, pareto_mask(done) if not done.empty else pd.Series(dtype=bool),
                            run.references(), std)
    run.write_table(BAND_FILE, band)
    if front.empty:
        return front
    return with_differences(with_intervals(front, std), best_reference(run.references()), std)


def complete_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that completed, with an accuracy and a latency (the networks a front is made of)."""
    if trials.empty or "state" not in trials:
        return trials.iloc[0:0]
    return trials[trials["state"] == "COMPLETE"].dropna(subset=["accuracy", "latency_ms"])
