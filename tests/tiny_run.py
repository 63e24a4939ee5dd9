"""One small real search run shared by the dashboard and export tests (made once per pytest session)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fatnas.runs.store import Run, create_run, open_run
from fatnas.search import record_run, run_search

from .conftest import FASHION_MNIST
from .test_search import tiny_settings

RUN_ID = "tiny-run"
TRIALS = 5


def shared_tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A 5-trial random search of the tiny space (budget 6 MFLOPs at 64 px, fat_b0..b3 over it).

    It lives under the session's base temporary folder, so every test module reuses it; treat
    it as read-only (copy it with `copy_run` to change it).
    """
    if not FASHION_MNIST.is_dir():
        pytest.skip("apt-get install dataset-fashion-mnist (make test does)")
    root = tmp_path_factory.getbasetemp() / "shared-runs"
    done = root / f"{RUN_ID}.done"
    if done.is_file():
        return open_run(RUN_ID, root=root)
    shutil.rmtree(root / RUN_ID, ignore_errors=True)  # a half-made run from an interrupted session
    settings = tiny_settings(trials=TRIALS, references=True)
    run = create_run(RUN_ID, root=root)
    record_run(run, settings, "optuna", argv=["tests/tiny_run.py"])
    run_search(run, settings, progress=False)
    done.touch()
    return run


def copy_run(run: Run, root: Path, run_id: str | None = None) -> Run:
    """A copy of a run folder under `root` (e.g. the test's FATNAS_RUNS_DIR), optionally renamed."""
    target = root / (run_id or run.id)
    shutil.copytree(run.path, target)
    return open_run(target.name, root=root)
