"""Kill -9 at a point Hypothesis draws, then resume: no finished trial is lost or changed, no recorded setting
changes, and the run ends with what it was asked for (slow tier: each example kills a real search process)."""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from .conftest import ROOT, TINY_PROXY, TINY_SPACE, needs_fashion_mnist
from .forkserver import ForkServer

TRIALS = 3
SEARCH = ["search", "--budget", "6MFLOPs", "--space", str(TINY_SPACE), "--trials", str(TRIALS), "--sampler",
          "random", "--no-references", "--threads", "1", "--quiet", "--run-id", "k", "--heartbeat-interval", "1",
          "--grace-period", "3", *TINY_PROXY]  # a killed trial is failed 3 s after its last heartbeat
FINISHED = ("COMPLETE", "PRUNED")
# what a resume adds to run.yaml: its own record, and the noise the run measures once its trials are done (where
# the kill came before it); everything else, a noise already measured included, it must leave as it was
RESUME_WRITES = {"resumed"}
MEASURED_AT_THE_END = "noise"


@pytest.fixture(scope="module")
def forks():
    server = ForkServer()
    yield server
    server.close()


def _rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    if not db.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute(query).fetchall()
    except sqlite3.Error:
        return []


def finished_trials(db: Path) -> dict[int, tuple[Any, ...]]:
    """Each finished trial's number, state, objective values and parameters, as the study holds them."""
    trials = _rows(db, "SELECT trial_id, number, state FROM trials")
    values = _rows(db, "SELECT trial_id, objective, value FROM trial_values")
    params = _rows(db, "SELECT trial_id, param_name, param_value FROM trial_params")
    return {number: (state, sorted(v[1:] for v in values if v[0] == tid), sorted(p[1:] for p in params if p[0] == tid))
            for tid, number, state in trials if state in FINISHED}


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def recorded(run_yaml: Path) -> dict[str, Any]:
    return {k: v for k, v in yaml.safe_load(run_yaml.read_text()).items() if k not in RESUME_WRITES}


@needs_fashion_mnist
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.generate])  # no shrinking: each example is a real search
@given(trials_seen=st.integers(1, 2 * TRIALS - 1), extra_s=st.floats(0, 1.5))
def test_a_search_killed_anywhere_resumes_to_its_target_keeping_every_finished_trial(forks, tmp_path_factory,
                                                                                     trials_seen, extra_s):
    folder = tmp_path_factory.mktemp("kill")
    env = {"FATNAS_RUNS_DIR": str(folder / "runs"), "FATNAS_VARIANTS_DIR": str(folder / "variants")}
    db, run_yaml = folder / "runs" / "k" / "study.db", folder / "runs" / "k" / "run.yaml"
    pid = forks.start(SEARCH, cwd=ROOT, env=env, log=folder / "search.log")
    deadline = time.monotonic() + 300
    while _alive(pid) and time.monotonic() < deadline and len(_rows(db, "SELECT number FROM trials")) < trials_seen:
        time.sleep(0.05)
    time.sleep(extra_s)
    os.kill(pid, signal.SIGKILL)  # a finished child is a zombie until reaped: the signal does nothing to it
    forks.wait(pid)
    before, settings_before = finished_trials(db), recorded(run_yaml)

    status = forks.wait(forks.start(["search", "--resume", "k", "--quiet"], cwd=ROOT, env=env,
                                    log=folder / "resume.log"))
    log = (folder / "resume.log").read_text()
    assert status == 0, log
    after = finished_trials(db)
    assert {n: after.get(n) for n in before} == before  # none lost, none changed
    published = pd.read_csv(folder / "runs" / "k" / "trials.csv")  # PRUNED here: stopped early, not infeasible
    assert published["state"].isin(["COMPLETE", "PRUNED"]).sum() == TRIALS
    assert "RUNNING" not in {state for (state,) in _rows(db, "SELECT state FROM trials")}
    settings_after = recorded(run_yaml)
    if MEASURED_AT_THE_END not in settings_before:
        settings_after.pop(MEASURED_AT_THE_END, None)
    assert settings_after == settings_before
