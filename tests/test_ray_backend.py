"""The Ray Tune backend on a real local Ray runtime (2 CPUs, started once for the module).

Same run files and trials.csv columns as the Optuna backend, a front within budget,
infeasible draws never trained, a trial that raises recorded FAIL, kill -9 then resume,
and bad options refused before any run folder exists.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fatnas.estimate.cost import parse_budget
from fatnas.estimate.data import load_dataset
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.space import load_space
from fatnas.runs.store import create_run, open_run
from fatnas.search import backend_options, record_run, run_search

from .conftest import ROOT, TINY_SPACE, needs_fashion_mnist, run_cli
from .test_search import tiny_settings

ray = pytest.importorskip("ray")

TIGHT_BUDGET = "5.6MFLOPs"  # at the tiny space's 64 px: about half of its 128 points are over it


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray runtime for the module; searches in this process and CLI runs join it."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def ray_run(run_id: str, settings, **options):
    run = create_run(run_id)
    record_run(run, settings, "ray", argv=["tests/test_ray_backend.py"])
    run_search(run, settings, backend="ray", progress=False, options=backend_options("ray", settings.device, **options))
    return run


@needs_fashion_mnist
def test_ray_search_writes_the_optuna_backends_files_and_a_front_within_budget(isolated_dirs, ray_cluster):
    optuna_run = create_run("o")
    optuna_settings = tiny_settings(trials=2, references=True)  # fat_b0..b3 are over the budget: priced, never trained
    record_run(optuna_run, optuna_settings, "optuna", argv=["tests/test_ray_backend.py"])
    run_search(optuna_run, optuna_settings, progress=False)

    settings = tiny_settings(trials=4, budget=parse_budget(TIGHT_BUDGET, res=64), references=True, seed=1)
    run = ray_run("r", settings, max_concurrent=2, cpus_per_trial=1)

    assert {p.name for p in run.path.iterdir()} >= {"run.yaml", "trials.csv", "pareto.csv", "references.csv",
                                                    "configs", "ray"}
    assert (run.path / "ray" / "tuner.pkl").is_file()
    meta = run.read_meta()
    assert meta["backend"] == "ray"
    assert meta["ray"]["max_concurrent"] == 2 and meta["ray"]["cpus_per_trial"] == 1
    assert meta["ray"]["finished"] == "target" and meta["ray"]["init_seconds"] == 0  # joined the fixture's runtime

    trials, reference = run.trials(), optuna_run.trials()
    assert list(trials.columns) == list(reference.columns)
    assert list(run.pareto().columns) == list(optuna_run.pareto().columns)
    assert len(run.references()) == len(optuna_run.references()) == 4
    assert list(run.references().columns) == list(optuna_run.references().columns)
    assert sorted(trials["trial"]) == list(range(len(trials)))  # Optuna's trial numbers, one row each
    import optuna  # the run's own study (optuna-dashboard opens it) holds every trial, told as trials.csv says

    study = optuna.load_study(study_name="r", storage=run.storage_url)
    told = {t.number: t.state.name for t in study.trials}
    assert sorted(told) == sorted(trials["trial"])
    expected = {"INFEASIBLE": "PRUNED"}
    assert all(told[n] == expected.get(state, state) for n, state in zip(trials["trial"], trials["state"]))
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED", "INFEASIBLE"}
    assert trials["state"].isin(["COMPLETE", "PRUNED"]).sum() == 4
    assert (trials[trials["state"] == "COMPLETE"]["val_loss"] > 0).all()

    budget = parse_budget(TIGHT_BUDGET)
    infeasible = trials[trials["state"] == "INFEASIBLE"]
    assert len(infeasible) >= 1, "the seed should draw some configs over the budget"
    assert (infeasible["flops"] > budget.max_flops).all()
    assert infeasible["images_seen"].eq(0).all() and infeasible["infeasible"].str.contains("FLOPs").all()
    trained = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert (trained["flops"] <= budget.max_flops).all() and trained["latency_ms"].gt(0).all()

    front = run.pareto()
    assert len(front) >= 1 and (front["flops"] <= budget.max_flops).all()
    assert sorted(p.stem for p in (run.path / "configs").glob("*.yaml")) == sorted(f"trial_{t}" for t in front["trial"])

    # the curve of a pruned trial comes from its reports: the same checkpoints a full training makes
    data = load_dataset(settings.dataset, seed=settings.seed)
    expected = settings.proxy.checkpoint_images(len(data.train_x))
    for _, row in trials[trials["state"] == "COMPLETE"].iterrows():
        assert [x for x, _ in json.loads(row["curve"])] == expected


@needs_fashion_mnist
def test_a_finished_search_goes_on_to_a_raised_target_keeping_its_rows(isolated_dirs, ray_cluster):
    """Tune keeps an ended experiment ended; a raised --trials goes on in a new one beside it."""
    settings = tiny_settings(trials=2, seed=3)
    run = ray_run("more", settings, max_concurrent=2, cpus_per_trial=1)
    before = run.trials()
    assert run.read_meta()["ray"]["finished"] == "target"

    run_search(run, dataclasses.replace(settings, trials=3), backend="ray", progress=False,
               options=backend_options("ray", settings.device, max_concurrent=2, cpus_per_trial=1))
    after = run.trials()
    assert after["trial"].is_unique and after["state"].isin(["COMPLETE", "PRUNED"]).sum() == 3
    kept = after.merge(before[["trial", "config", "accuracy"]], on="trial", suffixes=("", "_before"))
    assert len(kept) == len(before)
    assert (kept["config"] == kept["config_before"]).all()
    assert kept["accuracy"].equals(kept["accuracy_before"].rename("accuracy"))  # NaN (infeasible) as NaN
    assert run.read_meta()["ray"]["finished"] == "target"
    assert (run.path / "ray.1" / "tuner.pkl").is_file() and (run.path / "ray" / "tuner.pkl").is_file()


def windowed_space(tmp_path: Path) -> Path:
    """The tiny space with a choice of window 2 in the last stage (a 2 x 2 map at 64 px)."""
    data = yaml.safe_load(TINY_SPACE.read_text())
    data.update(name="tiny-windows", windows=[[2, 4], [2], [1], [1, 2]])
    path = tmp_path / "tiny_windows.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@needs_fashion_mnist
def test_a_trial_that_raises_is_recorded_as_failed_and_the_search_finishes(isolated_dirs, ray_cluster):
    # A real error, raised inside the Ray worker: with batches of one image, BatchNorm cannot
    # train on a 1 x 1 map. At 64 px the last stage's map is 2 x 2, and window 2 pools it to
    # 1 x 1 before a BatchNorm, so exactly the configs with windows_3 == 2 fail to train.
    space = load_space(windowed_space(isolated_dirs))
    settings = tiny_settings(space=space, budget=parse_budget([]), trials=3, seed=3, early_stopping=False,
                             proxy=ProxySettings(res=64, train_images=8, batch_size=1, eval_every=2, val_images=50))
    run = ray_run("f", settings, max_concurrent=2)

    trials = run.trials()
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) >= 1, "the seed should draw some window-2 configs"
    assert failed["error"].str.contains("Expected more than 1 value per channel when training").all()
    assert (failed["windows_3"] == 2).all() and failed["flops"].gt(0).all()  # the row still names the network
    trained = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert len(trained) == 3 and (trained["windows_3"] == 1).all()
    assert run.read_meta()["ray"]["finished"] == "target"


@needs_fashion_mnist
def test_kill_9_then_resume_keeps_finished_trials(isolated_dirs, ray_cluster):
    runs = isolated_dirs / "runs"
    common = ["--backend", "ray", "--ray-address", ray_cluster, "--quiet"]
    cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--space", str(TINY_SPACE), "--trials", "4",
           "--run-id", "k", "--sampler", "random", "--proxy-images", "256", "--proxy-epochs", "1",
           "--batch-size", "32", "--no-references", "--max-concurrent", "2", *common]
    proc = subprocess.Popen(cmd, env=dict(os.environ), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trials_csv = runs / "k" / "trials.csv"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if trials_csv.is_file() and pd.read_csv(trials_csv)["state"].isin(["COMPLETE", "PRUNED"]).sum() >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the search ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(trials_csv)
    finished = before[before["state"].isin(["COMPLETE", "PRUNED"])][["trial", "config", "accuracy"]]
    assert open_run("k").read_meta()["ray"]["finished"] is None

    out = run_cli("search", "--resume", "k", *common)
    assert out.returncode == 0, out.stderr[-3000:]
    after = open_run("k").trials()
    assert after["trial"].is_unique
    kept = after.merge(finished, on="trial", suffixes=("", "_before"))
    assert len(kept) == len(finished)
    assert (kept["config"] == kept["config_before"]).all() and (kept["accuracy"] == kept["accuracy_before"]).all()
    assert after["state"].isin(["COMPLETE", "PRUNED"]).sum() == 4
    assert open_run("k").read_meta()["ray"]["finished"] == "target"


@pytest.mark.parametrize("args, message", [
    (["--cpus-per-trial", "2"], "--cpus-per-trial: only valid with --backend ray"),
    (["--backend", "ray", "--cpus-per-trial", "0"], "--cpus-per-trial 0: must be a positive number"),
    (["--backend", "ray", "--cpus-per-trial", "999"], "--cpus-per-trial 999: this machine has"),
    (["--backend", "ray", "--gpus-per-trial", "-1"], "--gpus-per-trial -1: must be 0 or a positive number"),
    (["--backend", "ray", "--max-concurrent", "0"], "--max-concurrent 0: must be a positive integer"),
    (["--backend", "ray", "--ray-address", "head-node"], "--ray-address 'head-node': accepted forms: auto, HOST:PORT"),
    (["--backend", "ray", "--ray-address", "head:99999"], "accepted forms"),
    (["--backend", "ray", "--ray-address", "127.0.0.1:1"], "--ray-address 127.0.0.1:1: nothing answers there"),
    (["--backend", "ray", "--device", "cuda"], "--device cuda with --backend ray needs --gpus-per-trial > 0"),
])
def test_bad_ray_options_exit_2_before_any_run_folder(isolated_dirs, capsys, args, message):
    from fatnas import cli

    assert cli.main(["search", "--budget", "2GFLOPs", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    runs = isolated_dirs / "runs"
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("name", ["StudySearcher", "MedianScheduler", "SessionStopper", "RunRecorder", "trial_name",
                                  "trial_dirname"])
def test_tune_pickles_of_runs_made_before_the_split_still_load(name):
    """tuner.pkl of an older run names its searcher, scheduler, stopper and callbacks by the old module path."""
    import pickle

    from fatnas.search.ray_backend import driver

    old_reference = f"cfatnas.search.ray_backend\n{name}\n.".encode()  # pickle's GLOBAL opcode, as an old run holds
    assert pickle.loads(old_reference) is getattr(driver, name)


def test_the_runtime_env_ships_the_fatnas_package():
    from fatnas.search.ray_backend.driver import fatnas_runtime_env

    (folder,) = fatnas_runtime_env()["py_modules"]
    assert Path(folder).name == "fatnas" and (Path(folder) / "search" / "ray_backend" / "driver.py").is_file()
