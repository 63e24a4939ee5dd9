"""The confirm stage: a race over the band with a stronger recipe, beside the search's files, resumable."""
from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from fatnas.cli import main
from fatnas.errors import FatnasError
from fatnas.report.dashboard import accuracy_points, dashboard_html, load_run_data
from fatnas.runs.store import open_run
from fatnas.study.confirm import (
    CONFIRM_SEED,
    DOUBT,
    IN,
    OUT,
    ConfirmBudget,
    confirm_settings,
    next_seeds,
    parse_confirm_budget,
    prepare_confirm,
    run_confirm,
    standings,
)

from .conftest import ROOT, TINY_PROXY, TINY_SPACE, needs_fashion_mnist, run_cli
from .tiny_run import copy_run

TINY_RECIPE = "train_images=128,epochs=1"
SEARCH_FILES = ("trials.csv", "pareto.csv", "band.csv", "noise.csv")


@pytest.fixture
def run(tiny_run, isolated_dirs):
    return copy_run(tiny_run, isolated_dirs / "runs", "c")


def trainings(accuracies: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([dict(network=n, seed=CONFIRM_SEED + i, accuracy=a)
                         for n, values in accuracies.items() for i, a in enumerate(values)])


def test_budget_takes_a_training_time_or_a_count_and_names_the_forms_otherwise():
    assert parse_confirm_budget("20m") == ConfirmBudget(seconds=1200)
    assert parse_confirm_budget("1.5h") == ConfirmBudget(seconds=5400)
    assert parse_confirm_budget("12trainings") == parse_confirm_budget("12") == ConfirmBudget(trainings=12)
    for bad in ("soon", "0s", "-3", "1e9h", ""):
        with pytest.raises(FatnasError, match="accepted a training time such as 600s"):
            parse_confirm_budget(bad)
    assert ConfirmBudget(trainings=3).spent(0, 3) and not ConfirmBudget(seconds=60).spent(59.0, 100)


def test_the_race_gives_seeds_only_where_they_still_decide_the_front():
    networks = pd.DataFrame(dict(network=["fast", "close", "slow_bad", "slow_best"], trial=[0, 1, 2, 3],
                                 latency_ms=[1.0, 2.0, 3.0, 4.0]))
    table = standings(trainings(dict(fast=[0.70])), networks)
    assert next_seeds(table) == ["fast", "close", "slow_bad", "slow_best"]  # everyone gets its first seeds
    rows = trainings(dict(fast=[0.700, 0.710], close=[0.712, 0.702], slow_bad=[0.50, 0.51], slow_best=[0.90, 0.91]))
    table = standings(rows, networks).set_index("network")
    assert table["seeds"].tolist() == [2, 2, 2, 2] and table.loc["slow_best", "accuracy"] == pytest.approx(0.905)
    assert table.loc["fast", "status"] == IN  # nothing is faster
    assert table.loc["close", "status"] == DOUBT  # level with the faster one, within the noise
    assert table.loc["slow_bad", "status"] == OUT and table.loc["slow_best", "status"] == IN
    assert next_seeds(table.reset_index()) == ["close"]
    assert next_seeds(table.reset_index(), max_seeds=2) == []
    assert (table["accuracy_low"] < table["accuracy"]).all() and table.loc["slow_bad", "on_confirmed_front"] == False  # noqa: E712


@pytest.mark.slow  # two stages of up to 7 trainings in all
@needs_fashion_mnist
def test_confirm_races_within_its_budget_beside_the_searchs_files_and_resumes(run):
    before = {name: (run.path / name).read_bytes() for name in SEARCH_FILES}
    settings = confirm_settings("5trainings", recipe=TINY_RECIPE, networks=2)
    table = run_confirm(prepare_confirm("c", settings))
    rows = run.read_table("confirm_rows.csv")
    assert 4 <= len(rows) <= 5 and rows["seed"].min() == CONFIRM_SEED  # two networks, two seeds each, then the race
    assert {name: (run.path / name).read_bytes() for name in SEARCH_FILES} == before  # never in their place
    assert list(table["network"]) == [f"trial_{t}" for t in table["trial"]] and len(table) == 2
    assert (table["seeds"] >= 2).all() and table["accuracy_low"].notna().all()
    assert set(table["status"]) <= {IN, OUT, DOUBT} and table["on_confirmed_front"].any()
    confirm = run.read_meta()["confirm"]
    assert confirm["state"] == "done" and confirm["recipe"].startswith("train_images=128,")
    assert confirm["trainings"] == len(rows)
    assert confirm["stop_reason"] in ("decided", "budget")
    with pytest.raises(FatnasError, match="has a confirm stage already; continue it with .* --resume"):
        prepare_confirm("c", settings)
    more = confirm_settings("7trainings", recipe=TINY_RECIPE, networks=2)
    run_confirm(prepare_confirm("c", more, resume=True))
    again = run.read_table("confirm_rows.csv")
    assert again.iloc[:len(rows)].equals(rows) and len(again) <= 7  # nothing trained twice, the new budget kept


@pytest.mark.slow  # a confirmed stage's 4 trainings (about 8 s): the fast tier stays within 120 s
@needs_fashion_mnist
def test_export_and_dashboard_take_the_confirmed_front(run, isolated_dirs, capsys):
    run_confirm(prepare_confirm("c", confirm_settings("4trainings", recipe=TINY_RECIPE, networks=2)))
    table = run.read_table("confirmed.csv")
    front = table[table["on_confirmed_front"]]
    assert main(["export", "c", "--confirmed", "--prefix", "conf_"]) == 0
    out = capsys.readouterr().out
    assert "confirmed accuracy" in out and "90% interval" in out
    for trial in front["trial"]:
        source = yaml.safe_load((isolated_dirs / "variants" / f"conf_{trial}.yaml").read_text())
        assert source["source"]["confirmed_seeds"] >= 2 and len(source["source"]["confirmed_interval"]) == 2
    assert 'id="confirmed-0"' in dashboard_html([load_run_data(run)])
    points = accuracy_points([load_run_data(run)], "latency_ms", ("confirmed", "confirmed_front"))
    assert (points["group"] == "confirmed").sum() == len(table)
    assert (points["group"] == "confirmed_front").sum() == len(front) and (points["error"] > 0).all()


@needs_fashion_mnist
def test_bad_confirm_input_is_one_line_exit_2_and_writes_nothing(run, capsys):
    names = sorted(p.name for p in run.path.iterdir())
    for args, message in [(["--budget", "soon"], "accepted a training time"),
                          (["--recipe", "epochs=zero"], "is not an integer"),
                          (["--networks", "0"], "--networks 0: accepted 1 to"),
                          (["--backend", "spark"], "accepted local, ray"),
                          (["--backend", "local", "--ray-address", "auto"], "--ray-address goes with --backend ray"),
                          (["--resume"], "has no confirm stage to resume")]:
        assert main(["confirm", "c", *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in run.path.iterdir()) == names


@needs_fashion_mnist
def test_confirm_survives_kill_9_and_resumes_on_two_workers(run):
    cmd = [sys.executable, str(ROOT / "cli.py"), "confirm", "c", "--budget", "8trainings", "--quiet",
           "--recipe", "train_images=512,epochs=1", "--networks", "3"]
    proc = subprocess.Popen(cmd, env=dict(os.environ), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows_csv = run.path / "confirm_rows.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if rows_csv.is_file() and len(pd.read_csv(rows_csv)) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the stage ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(rows_csv)
    out = run_cli("confirm", "c", "--resume", "--budget", "8trainings", "--workers", "2", "--quiet",
                  "--recipe", "train_images=512,epochs=1", "--networks", "3")
    assert out.returncode == 0, out.stderr
    after = open_run("c").read_table("confirm_rows.csv")
    assert after.iloc[:len(before)].equals(before) and len(after) <= 8
    assert not after.duplicated(["network", "seed"]).any()
    assert "confirmed (" in out.stdout and "90% intervals" in out.stdout


@needs_fashion_mnist
def test_search_with_confirm_runs_both_stages_on_ray(isolated_dirs):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        out = run_cli("search", "--budget", "6MFLOPs", "--space", str(TINY_SPACE), "--trials", "3", "--run-id", "rc",
                      "--quiet", "--sampler", "random", "--backend", "ray", "--ray-address",
                      ray.get_runtime_context().gcs_address, "--confirm", "4trainings", "--confirm-recipe",
                      TINY_RECIPE, "--confirm-networks", "2", *TINY_PROXY)
    finally:
        ray.shutdown()
    assert out.returncode == 0, out.stderr
    run = open_run("rc")
    confirm = run.read_meta()["confirm"]
    assert confirm["executor"] == "ray" and confirm["trainings"] == len(run.read_table("confirm_rows.csv")) >= 4
    assert "band:" in out.stdout and "confirmed (" in out.stdout


def _files(run) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.path.iterdir() if p.is_file()}


def _set_stage(run, **fields) -> None:
    meta = run.read_meta()
    meta["confirm"] = fields.pop("section") if "section" in fields else {**meta["confirm"], **fields}
    run.write_meta(meta)


@pytest.mark.slow  # a stage of 2 trainings, then resumes
@needs_fashion_mnist
def test_a_resume_keeps_what_the_stage_recorded(run, capsys):
    run_confirm(prepare_confirm("c", confirm_settings("2trainings", recipe=TINY_RECIPE, networks=2)))
    recorded = run.read_meta()["confirm"]
    assert recorded["state"] == "done" and recorded["trainings"] == 2
    before = _files(run)
    # a finished stage resumed with no new budget: a no-op that says so, nothing written
    assert main(["confirm", "c", "--resume", "--quiet"]) == 0
    assert "nothing to resume" in capsys.readouterr().out and _files(run) == before
    # a flag unlike the record is refused in one line; one that may change is taken
    for args, word in [(["--recipe", "train_images=256,epochs=1"], "recipe"), (["--networks", "3"], "networks"),
                       (["--min-seeds", "3"], "min_seeds")]:
        assert main(["confirm", "c", "--resume", *args]) == 2
        err = capsys.readouterr().err
        assert f"keeps the stage's recorded {word}" in err and err.count("\n") == 1, err
    assert _files(run) == before
    # killed mid-stage with 3 trainings recorded as its budget: it trains 1 more, with the recorded recipe
    _set_stage(run, state="running", budget="3 trainings")
    assert main(["confirm", "c", "--resume", "--quiet", "--recipe", TINY_RECIPE]) == 0
    after = run.read_meta()["confirm"]
    assert after["trainings"] == 3 and after["budget"] == "3 trainings" and after["state"] == "done"
    assert after["recipe_settings"] == recorded["recipe_settings"] and after["networks"] == recorded["networks"]
    assert run.read_table("confirm_rows.csv").iloc[:2].equals(pd.read_csv(io.BytesIO(before["confirm_rows.csv"])))


@needs_fashion_mnist
@pytest.mark.parametrize("section,words", [
    ("broken", "confirm"),
    ({"state": [1, 2]}, "state"),
    ({"max_seeds": 99999999999}, "max_seeds"),
    ({"budget": "-5 trainings"}, "budget"),
    ({"networks": []}, "networks"),
])
def test_a_damaged_confirm_section_is_one_line_and_trains_nothing(run, capsys, section, words):
    valid = dict(state="running", recipe=TINY_RECIPE, budget="2 trainings", networks=["trial_0"], min_seeds=2,
                 max_seeds=5, trainings=0)
    _set_stage(run, section=section if isinstance(section, str) else {**valid, **section})
    before = _files(run)
    assert main(["confirm", "c", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert ("confirm section is damaged" in err or "run.yaml" in err) and words in err and err.count("\n") == 1, err
    assert _files(run) == before
