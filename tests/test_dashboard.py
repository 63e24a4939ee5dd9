"""Dashboard: the plain tables behind each plot, and the HTML page rendered in headless Chromium."""
from __future__ import annotations

import json
import math

import optuna
import pandas as pd
import pytest

from fatnas.cli import main
from fatnas.estimate.cost import Budget
from fatnas.report.dashboard import (
    PLOT_IDS,
    SUMMARY_HEADINGS,
    RunData,
    accuracy_points,
    dashboard_html,
    hypervolume_info,
    importance_info,
    load_run_data,
    load_study,
    optuna_importances,
    parcoords_table,
    pareto_figure,
    spread_importances,
    summary_display_table,
    summary_table,
)
from fatnas.report.dashboard.page import BAND_HEADINGS, band_display_table
from fatnas.report.dashboard.tables import band_table
from fatnas.runs.noise import Z
from fatnas.runs.store import Run, hypervolume
from fatnas.study.trust import find_proxy_trust

from .browser import render_page
from .conftest import run_cli
from .tiny_run import copy_run

# script bodies run in the page: what each plot div holds once plotly has drawn it
TRACE_COUNTS = """
const out = {};
for (const div of document.querySelectorAll('.js-plotly-plot')) {
  out[div.id] = Object.fromEntries(div.data.map(t => [t.uid, (t.x || t.dimensions || []).length]));
}
return out;
"""
AXIS_TITLES = """
const out = {};
for (const id of ['pareto', 'acc-flops', 'acc-params']) {
  const layout = document.getElementById(id).layout;
  out[id] = [layout.xaxis.title.text, layout.yaxis.title.text];
}
return out;
"""
FRONT_HOVER = "return document.getElementById('pareto').data.find(t => t.uid === 'front-0').hovertext[0]"


@pytest.fixture(scope="module")
def run(tiny_run) -> Run:
    return tiny_run


@pytest.fixture(scope="module")
def data(run) -> RunData:
    return load_run_data(run)


def test_page_renders_offline_without_errors_and_shows_the_front(run, capsys):
    assert main(["dashboard", str(run.path)]) == 0
    page = run.path / "dashboard.html"  # the default output
    assert str(page) in capsys.readouterr().out
    text = page.read_text()
    assert "<script src=" not in text and "<link" not in text  # plotly.js inlined: opens offline

    result = render_page(page, run.path / "dashboard.png",
                         scripts=dict(traces=TRACE_COUNTS, axes=AXIS_TITLES, hover=FRONT_HOVER,
                                      summary="return document.getElementById('summary').innerText"))
    assert result.js_errors == []
    assert set(PLOT_IDS) <= set(result.plot_ids)
    traces = result.values["traces"]
    assert traces["pareto"]["front-0"] == len(run.pareto()) >= 1
    trials = run.trials()
    assert traces["pareto"]["trials-0"] == (trials["state"] == "COMPLETE").sum()
    assert traces["acc-flops"]["trials-0"] == traces["acc-params"]["trials-0"] == traces["pareto"]["trials-0"]
    assert traces["hypervolume"]["hv-0"] == len(trials)
    for plot, (x_title, y_title) in result.values["axes"].items():
        assert y_title == "proxy accuracy (fashion-mnist)", plot
    assert "fvcore total at 64 px" in result.values["axes"]["acc-flops"][0]
    assert "fvcore total at 64 px" in result.values["hover"] and "params:" in result.values["hover"]
    assert "latency:" in result.values["hover"] and "config: w=" in result.values["hover"]
    assert "6.00 MFLOPs" in result.values["summary"] and "fat_b0" in result.values["summary"]
    assert result.screenshot.is_file() and result.screenshot.stat().st_size > 20_000


def test_page_shows_the_runs_noise_and_its_band_with_intervals(data, run):
    text = dashboard_html([data])
    assert 'id="noise-0"' in text and "measured: pooled seed std" in text and 'id="band-0"' in text
    band = band_table(data)
    assert set(run.pareto()["trial"]) <= set(band["trial"])
    assert (band["accuracy_low"] < band["accuracy"]).all() and "90% interval" in text


def test_browser_helper_reports_javascript_errors(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>throw new Error('deliberate failure');</script></body></html>")
    result = render_page(page, scripts=dict(paragraphs="return document.querySelectorAll('p').length"))
    assert any("deliberate failure" in e for e in result.js_errors)
    assert result.values["paragraphs"] == 1 and result.plot_ids == []


def test_summary_row_counts_states_front_and_best_accuracy(data, run):
    row = summary_table([data]).iloc[0]
    trials = run.trials()
    counts = trials["state"].value_counts()
    assert row["trials"] == len(trials)
    for state in ("COMPLETE", "PRUNED", "INFEASIBLE", "FAIL"):
        assert row[state] == counts.get(state, 0)
    assert row["front"] == len(run.pareto())
    done = trials[trials["state"] == "COMPLETE"]
    assert row["best_accuracy"] == done["accuracy"].max()
    assert done.loc[done["trial"] == row["best_trial"], "accuracy"].iloc[0] == row["best_accuracy"]
    assert row["budget"].startswith("FLOPs <= 6.00 MFLOPs (fvcore total at 64x64)")
    # at 6 MFLOPs (64 px) every published FAT is over budget, so none is evaluated
    assert row["best_reference"] is None and row["over_budget_references"] == "fat_b0, fat_b1, fat_b2, fat_b3"


def test_summary_compares_with_the_best_reference_under_budget():
    trials = pd.DataFrame(dict(trial=[0, 1, 2], state=["COMPLETE", "COMPLETE", "PRUNED"], accuracy=[0.8, 0.9, 0.95],
                               latency_ms=[5.0, 9.0, 3.0], params=[1e5, 2e5, 1e5], flops=[10, 50, 10]))
    refs = pd.DataFrame(dict(name=["fat_b0", "fat_b1"], trial=[-1, -1], state=["REFERENCE", "OVER_BUDGET"],
                             accuracy=[0.7, math.nan], latency_ms=[8.0, math.nan], params=[4e6, 7e6], flops=[30, 90]))
    data = RunData("r", None, {"sampler": "random"}, trials, trials.iloc[[0, 1]], refs, Budget(max_flops=40, res=64),
                   "fashion-mnist", 64, "cpu", find_proxy_trust({}, roots=[]))
    row = summary_table([data]).iloc[0]
    assert (row["best_accuracy"], row["best_trial"]) == (0.8, 0)  # trial 1 is over the FLOPs budget
    assert (row["best_reference"], row["best_reference_accuracy"]) == ("fat_b0", 0.7)
    assert row["over_budget_references"] == "fat_b1"
    assert (row["COMPLETE"], row["PRUNED"], row["FAIL"]) == (2, 1, 0)
    shown = summary_display_table(summary_table([data])).iloc[0]
    assert list(shown.index) == list(SUMMARY_HEADINGS)
    assert shown["trials"] == "3: 2 complete, 1 pruned" and shown["front"] == "2"
    # no noise measured, no fidelity study: the binomial std of the (unknown, so 1) validation images at the mean
    spread = Z * math.sqrt(0.85 * 0.15)
    assert shown["best proxy accuracy under budget"] == f"0.8000 +-{spread:.4f} (trial 0, 5.0 ms)"
    assert shown["best published FAT under budget"] == f"0.7000 +-{spread:.4f} (fat_b0)"
    assert shown["difference"].startswith("not distinguishable from fat_b0 (+0.1000, 90% interval -")
    band = band_display_table(band_table(data))
    assert list(band["trial"]) == ["0", "1"] and list(band["on the front"]) == ["yes", "yes"]
    assert band[BAND_HEADINGS[-1]].str.startswith("not distinguishable from fat_b0").all()


def test_hypervolume_of_known_points():
    assert hypervolume([(0.5, 10.0), (0.8, 20.0)], 30.0) == pytest.approx(20 * 0.5 + 10 * 0.3)
    assert hypervolume([(0.5, 10.0), (0.4, 15.0)], 30.0) == pytest.approx(20 * 0.5)  # dominated: no gain
    assert hypervolume([(0.9, 40.0)], 30.0) == 0.0  # beyond the reference latency
    assert hypervolume([], 30.0) == 0.0


def test_hypervolume_grows_with_trials_and_ends_at_the_front(data, run):
    info = hypervolume_info([data])
    trials = run.trials()
    assert list(info.table["trial"]) == sorted(trials["trial"])
    hv = info.table["hypervolume"].tolist()
    assert all(b >= a for a, b in zip(hv, hv[1:])) and hv[-1] > 0
    done = trials[trials["state"] == "COMPLETE"]
    assert info.ref_accuracy == 0.0 and info.ref_latency_ms == pytest.approx(1.1 * done["latency_ms"].max())
    front = run.pareto()
    front_points = list(zip(front["accuracy"], front["latency_ms"]))
    assert hv[-1] == pytest.approx(hypervolume(front_points, info.ref_latency_ms))
    best = info.table["best_accuracy"].dropna().tolist()
    assert all(b >= a for a, b in zip(best, best[1:])) and best[-1] == done["accuracy"].max()


def test_importance_falls_back_to_the_spread_on_few_trials(data):
    info = importance_info(data)
    assert info.method.startswith("spread of mean proxy accuracy")
    table = info.table
    assert set(table["param"]) <= {c for c in data.trials.columns if data.trials[c].nunique() > 1}
    assert table["importance"].sum() == pytest.approx(1.0) or table["importance"].sum() == 0
    assert table.equals(spread_importances(data.trials))


def test_optuna_importance_ranks_the_choice_that_drives_accuracy():
    study = optuna.create_study(directions=["maximize", "minimize"])
    dists = dict(widths_0=optuna.distributions.CategoricalDistribution([16, 24, 32]),
                 windows_0=optuna.distributions.CategoricalDistribution([2, 4]),
                 kernels_0=optuna.distributions.CategoricalDistribution([3]))
    for i in range(40):
        width, window = (16, 24, 32)[i % 3], (2, 4)[(i // 3) % 2]
        study.add_trial(optuna.trial.create_trial(params=dict(widths_0=width, windows_0=window, kernels_0=3),
                                                  distributions=dists, values=[width / 32, 5.0]))
    table = optuna_importances(study)
    assert table["param"].iloc[0] == "widths_0" and "kernels_0" not in set(table["param"])


def test_parcoords_holds_complete_trials_and_varying_choices(data, run):
    table = parcoords_table([data])
    trials = run.trials()
    assert len(table) == (trials["state"] == "COMPLETE").sum()
    assert {"accuracy", "latency_ms", "params", "flops"} <= set(table.columns)
    assert all(table[c].nunique() > 1 for c in table.columns if c.rsplit("_", 1)[-1].isdigit())


def test_accuracy_points_hold_every_group_with_its_error_bar_and_hover(data, run):
    points = accuracy_points([data], "flops", ("trials", "stopped", "published", "front"))
    trials = run.trials()
    counts = points["group"].value_counts()
    assert counts.get("trials", 0) == (trials["state"] == "COMPLETE").sum()
    assert counts.get("stopped", 0) == ((trials["state"] == "PRUNED") & trials["accuracy"].notna()).sum()
    assert counts["front"] == len(run.pareto()) and "published" not in counts  # every FAT is over this budget
    done = trials[trials["state"] == "COMPLETE"].sort_values("trial")
    mine = points[points["group"] == "trials"]
    assert sorted(mine["x"]) == sorted(done["flops"].astype(float))
    assert sorted(mine["accuracy"]) == sorted(done["accuracy"])
    noise = run.read_meta()["noise"]  # measured in the run: every error bar is its 90% half-width
    assert mine["error"].tolist() == pytest.approx([Z * noise["std"]] * len(mine))
    assert all("fvcore total at 64 px" in h for h in points["hover"]) and set(points["run"]) == {"tiny-run"}
    assert list(accuracy_points([data], "flops", ("front",))["group"].unique()) == ["front"]


def test_several_runs_are_overlaid_in_their_own_colors(run, tmp_path, capsys):
    other = copy_run(run, tmp_path, "tiny-copy")
    datas = [load_run_data(run), load_run_data(other)]
    fig = pareto_figure(datas)
    fronts = [t for t in fig.data if t.uid.startswith("front-")]
    assert [t.name.split(":")[0] for t in fronts] == ["tiny-run", "tiny-copy"]
    assert fronts[0].line.color != fronts[1].line.color
    assert all(len(t.x) == len(run.pareto()) for t in fronts)
    summary = summary_table(datas)
    assert list(summary["run"]) == ["tiny-run", "tiny-copy"] and summary["front"].nunique() == 1
    assert main(["dashboard", str(run.path), str(other.path), "-o", str(tmp_path / "both.html")]) == 0
    html = (tmp_path / "both.html").read_text()
    assert html.count('"uid":"front-') == 2 and html.count("plotly.js v") == 1  # plotly.js inlined once
    assert json.dumps("tiny-copy: Pareto front")[1:-1] in html


def test_unknown_run_is_one_line_and_exit_2():
    out = run_cli("dashboard", "no-such-run")
    assert out.returncode == 2
    assert "run 'no-such-run' not found" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_a_run_without_trials_still_gets_a_page(run, tmp_path):
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "run.yaml").write_text((run.path / "run.yaml").read_text())  # a search not started yet
    data = load_run_data(Run(tmp_path / "fresh"))
    row = summary_table([data]).iloc[0]
    assert (row["trials"], row["front"], row["COMPLETE"]) == (0, 0, 0) and math.isnan(row["best_accuracy"])
    page = dashboard_html([data])
    assert all(f'id="{plot_id}"' in page for plot_id in PLOT_IDS)


def test_the_study_is_read_from_the_runs_journal_file_when_it_has_no_study_db(run, tmp_path):
    copy = copy_run(run, tmp_path / "elsewhere")
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    target = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    optuna.copy_study(from_study_name=copy.id, from_storage=f"sqlite:///{copy.path / 'study.db'}",
                      to_storage=target)
    (copy.path / "study.db").unlink()
    assert load_study(load_run_data(copy)) is None  # run.yaml names study.db, which is gone

    copy.update_meta(storage=f"journal:///{journal}")
    study = load_study(load_run_data(copy))
    assert study is not None and len(study.trials) == len(optuna.load_study(
        study_name=run.id, storage=f"sqlite:///{run.path / 'study.db'}").trials)
