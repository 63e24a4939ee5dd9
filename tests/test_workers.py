"""Many workers on one search: shared SQLite, journal and PostgreSQL storages, heartbeats, rebuilding a run.

Workers are real `fatnas search` processes; the PostgreSQL server is a throwaway one on
127.0.0.1 (tests/postgres.py). Every search here shares one target across its workers.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from fatnas.errors import FatnasError
from fatnas.estimate.cost import parse_budget
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.space import load_space
from fatnas.runs.store import open_run
from fatnas.search import SearchSettings
from fatnas.search.interrupts import ctrl_c_allowed, ctrl_c_held
from fatnas.search.storage import Heartbeat, mask_password, normalize_storage, open_storage

from .conftest import ROOT, TINY_SPACE, needs_fashion_mnist, run_cli
from .postgres import PASSWORD, free_port, postgres_server

BUDGET = "6MFLOPs"  # at the tiny space's 64 px: excludes about a quarter of it
SEARCH = ["search", "--budget", BUDGET, "--space", str(TINY_SPACE), "--quiet", "--sampler", "random",
          "--no-references", "--proxy-images", "512", "--proxy-epochs", "1", "--batch-size", "32"]
TRAINED = ("COMPLETE", "PRUNED")


def study_of(run_id: str, storage: str) -> optuna.Study:
    return optuna.load_study(study_name=run_id, storage=open_storage(storage, Heartbeat()))


def assert_one_shared_search(run_id: str, storage: str, target: int, workers: int = 2) -> None:
    """Exactly `target` trained trials in the study and in trials.csv, one row per trial, each worker trained."""
    study = study_of(run_id, storage)
    trials = open_run(run_id).trials()
    assert trials["trial"].is_unique and sorted(trials["trial"]) == sorted(t.number for t in study.trials)
    trained = trials[trials["state"].isin(TRAINED)]
    assert len(trained) == target
    assert sum(t.state.name in TRAINED and not t.user_attrs.get("infeasible") and not t.user_attrs.get("screened_out")
               for t in study.trials) == target
    assert trained["worker"].nunique() == workers, trained[["trial", "worker"]]
    assert (trials["state"] != "RUNNING").all()


def tiny_settings(**changes) -> SearchSettings:
    space = load_space(TINY_SPACE)
    values = dict(space=space, budget=parse_budget(BUDGET, res=space.resolution), proxy=ProxySettings(), trials=4)
    return SearchSettings(**{**values, **changes})


@pytest.mark.parametrize("changes, message", [
    (dict(trials=0), "--trials 0: must be a positive number"),
    (dict(timeout_s=-1.0), "--timeout -1.0: must be a positive number"),
    (dict(threads=0), "--threads 0: must be a positive number"),
    (dict(sampler="cmaes"), "unknown sampler 'cmaes'; accepted: tpe, nsga2, gp, random"),
    (dict(prescreen="zen"), "unknown proxy 'zen'"),
])
def test_search_settings_refuse_what_the_command_line_refuses(changes, message):
    with pytest.raises(FatnasError, match=message.replace("(", r"\(")):
        tiny_settings(**changes)
    flag = {"trials": ["--trials", "0"], "timeout_s": ["--timeout", "-1.0"], "threads": ["--threads", "0"],
            "sampler": ["--sampler", "cmaes"], "prescreen": ["--prescreen", "zen"]}[next(iter(changes))]
    out = run_cli("search", "--budget", "2GFLOPs", *flag)
    cli_message = {"trials": "--trials: '0': expected a whole number from 1 to 1,000,000"}.get(next(iter(changes)))
    assert out.returncode == 2 and (cli_message or message) in out.stderr


def test_heartbeat_needs_a_grace_period_longer_than_its_interval():
    with pytest.raises(FatnasError, match="must be longer than the heartbeat interval"):
        Heartbeat(interval_s=5, grace_s=5)
    with pytest.raises(FatnasError, match="whole number of seconds"):
        Heartbeat(interval_s=0)


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for the test (a Ray runtime started earlier in the session installs its own)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_a_held_block_comes_when_the_block_ends(python_sigint):
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between bytecodes: give it the chance to interrupt, as it must not
            steps.append("finished")
    assert steps == ["finished"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with ctrl_c_held():
        steps.append("quiet")  # no Ctrl-C: nothing raised afterwards
    assert steps == ["finished", "quiet"]


def test_a_ctrl_c_inside_an_allowed_block_raises_at_once_and_a_pending_one_on_entry(python_sigint):
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            with ctrl_c_allowed():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
                steps.append("slept")  # never: the sleep is interrupted
    assert steps == []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            steps.append("held")
            with ctrl_c_allowed():
                steps.append("never")
    assert steps == ["held"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_storage_forms_are_normalized_and_passwords_masked(tmp_path):
    assert normalize_storage(str(tmp_path / "s.log")) == f"journal://{tmp_path / 's.log'}"
    assert normalize_storage(f"journal://{tmp_path}/j.log") == f"journal://{tmp_path}/j.log"
    assert normalize_storage("sqlite:///x.db") == f"sqlite:///{Path('x.db').resolve()}"
    assert mask_password("postgresql://ann:pw@db:5432/nas") == "postgresql://ann:***@db:5432/nas"
    assert mask_password("mysql+pymysql://ann@db/nas") == "mysql+pymysql://ann@db/nas"
    for bad in ("redis://db", "study.db", "sqlite://", "journal://"):
        with pytest.raises(FatnasError, match="accepted forms: sqlite:///PATH"):
            normalize_storage(bad)


@pytest.mark.parametrize("args, message", [
    (["--budget", "2GFLOPs", "--storage", "redis://db:6379"],
     "--storage 'redis://db:6379': unknown form; accepted forms"),
    (["--budget", "2GFLOPs", "--workers", "0"], "--workers 0: must be a positive number"),
    (["--budget", "2GFLOPs", "--workers", "2", "--backend", "ray"], "optuna backend"),
    (["--budget", "2GFLOPs", "--heartbeat-interval", "5", "--grace-period", "5"], "longer than the heartbeat"),
    (["--join", "a", "--resume", "b"], "--join and --resume: give one"),
    (["--join", "missing-run"], "run 'missing-run' not found"),
])
def test_bad_worker_input_exits_2_with_one_line_and_writes_nothing(isolated_dirs, args, message):
    out = run_cli("search", *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    runs = isolated_dirs / "runs"
    assert not runs.exists() or not any(runs.iterdir())


@needs_fashion_mnist
def test_an_unreachable_database_is_one_line_without_its_password(isolated_dirs):
    url = f"postgresql://ann:{PASSWORD}@127.0.0.1:{free_port()}/nas"
    out = run_cli("search", "--budget", "2GFLOPs", "--storage", url)
    assert out.returncode == 2 and "cannot open it" in out.stderr and "ann:***@" in out.stderr
    assert PASSWORD not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())
    out = run_cli("sync", "nowhere")
    assert out.returncode == 2 and "pass --storage URL" in out.stderr


@pytest.mark.slow
@needs_fashion_mnist
def test_two_workers_on_one_sqlite_study_reach_exactly_the_target(isolated_dirs):
    out = run_cli(*SEARCH, "--trials", "6", "--run-id", "w", "--workers", "2")
    assert out.returncode == 0, out.stderr
    assert "workers: this process and 1 more" in out.stdout
    run = open_run("w")
    assert "storage" not in run.read_meta() and (run.path / "study.db").is_file()
    assert_one_shared_search("w", run.storage_url, 6)


@pytest.mark.slow
@needs_fashion_mnist
def test_two_workers_on_one_journal_file_and_a_run_folder_rebuilt_elsewhere(isolated_dirs, monkeypatch):
    journal = isolated_dirs / "shared" / "study.log"
    out = run_cli(*SEARCH, "--trials", "6", "--run-id", "j", "--workers", "2", "--storage", str(journal))
    assert out.returncode == 0, out.stderr
    run = open_run("j")
    relative = os.path.relpath(journal.resolve(), ROOT.resolve())  # from the CLI's working folder: no machine path
    assert run.read_meta()["storage"] == f"journal://{relative}" and not (run.path / "study.db").exists()
    assert_one_shared_search("j", f"journal://{journal}", 6)

    monkeypatch.setenv("FATNAS_RUNS_DIR", str(isolated_dirs / "elsewhere"))  # another machine's runs/
    out = run_cli("sync", "j", "--storage", f"journal://{journal}")
    assert out.returncode == 0, out.stderr
    copy = open_run("j")
    assert copy.path != run.path and copy.read_meta() == run.read_meta()
    assert copy.trials().equals(run.trials()) and copy.pareto().equals(run.pareto())
    copied, original = ((r.path / "configs").iterdir() for r in (copy, run))
    assert sorted(p.name for p in copied) == sorted(p.name for p in original)
    out = run_cli("export", "j", "--pareto", "--prefix", "jx_t")
    assert out.returncode == 0, out.stderr
    out = run_cli("dashboard", "j")
    assert out.returncode == 0, out.stderr
    assert (copy.path / "dashboard.html").is_file()


@pytest.mark.slow
@needs_fashion_mnist
def test_postgres_two_workers_and_a_password_never_written(isolated_dirs):
    with postgres_server() as url:
        out = run_cli(*SEARCH, "--trials", "4", "--run-id", "pg", "--workers", "2", "--storage", url)
        assert out.returncode == 0, out.stderr
        run = open_run("pg")
        assert run.read_meta()["storage"] == url.replace(PASSWORD, "***")
        assert all(PASSWORD not in p.read_text() for p in run.path.rglob("*") if p.is_file() and p.suffix != ".lock")
        assert_one_shared_search("pg", url, 4)
        out = run_cli("search", "--join", "pg")
        assert out.returncode == 2 and "pass --storage URL" in out.stderr


@pytest.mark.slow
@needs_fashion_mnist
def test_a_killed_worker_is_failed_by_heartbeat_and_the_search_completes(isolated_dirs):
    env = dict(os.environ)
    cli = [sys.executable, str(ROOT / "cli.py")]
    first = subprocess.Popen([*cli, *SEARCH, "--trials", "8", "--run-id", "hb", "--heartbeat-interval", "1",
                              "--grace-period", "4"],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    storage, second = None, None
    try:
        deadline = time.monotonic() + 300
        while storage is None and time.monotonic() < deadline:  # the run and its study exist
            time.sleep(0.2)
            if (isolated_dirs / "runs" / "hb" / "trials.csv").is_file():
                storage = open_run("hb").storage_url
        second = subprocess.Popen([*cli, "search", "--join", "hb", "--quiet"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        victim = None
        while victim is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
            running = study_of("hb", storage).get_trials(states=(optuna.trial.TrialState.RUNNING,))
            victim = next((t.number for t in running if t.user_attrs.get("worker", "").endswith(f":{second.pid}")
                           and "config" in t.user_attrs and not t.user_attrs.get("infeasible")), None)
        assert victim is not None, "the joining worker never ran a trial"
        time.sleep(0.5)  # into its training
        os.kill(second.pid, signal.SIGKILL)
        second.wait()
        assert first.wait(timeout=600) == 0, first.stderr.read().decode()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    trials = open_run("hb").trials().set_index("trial")
    assert trials.loc[victim, "state"] == "FAIL" and "no heartbeat" in trials.loc[victim, "error"]
    assert trials["state"].isin(TRAINED).sum() == 8

    out = run_cli("search", "--join", "hb", "--trials", "9", "--quiet")  # the same run goes on
    assert out.returncode == 0, out.stderr
    after = open_run("hb").trials()
    assert after["state"].isin(TRAINED).sum() == 9 and after["trial"].is_unique
    assert after.set_index("trial").loc[victim, "state"] == "FAIL"
