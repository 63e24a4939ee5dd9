"""The latency model: a profiled table round-trips, prices configs, refuses what it does not fit, drives a search."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fatnas.cli import main
from fatnas.estimate.latency import (
    LatencyModelError,
    ProfileSettings,
    RelativeTimer,
    config_parts,
    file_fingerprint,
    load_table,
    profile_space,
    sample_configs,
    space_fingerprint,
    space_parts,
    torch_threads,
)
from fatnas.model.space import load_space, shipped_spaces
from fatnas.runs.store import open_run

from .conftest import ROOT, TINY_PROXY, TINY_SPACE, needs_fashion_mnist

QUICK = ProfileSettings(warmup=1, repeats=1, calibration_repeats=1)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """The tiny space profiled here (torch, CPU, 1 thread, 64 px), saved to a file."""
    table = profile_space(load_space(TINY_SPACE), QUICK)
    return table.save(tmp_path_factory.mktemp("tables") / "tiny.json")


def in_process(*args: str, capsys) -> tuple[int, str, str]:
    status = main(list(args))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_every_config_of_the_space_is_made_of_profiled_parts():
    space = load_space("fat")
    keys = {p.key for p in space_parts(space)}
    assert len(keys) == len(space_parts(space))
    for cfg in sample_configs(space, 100, seed=3):
        assert {p.key for p in config_parts(cfg, 224)} <= keys


def test_carriers_hold_every_part_and_time_each_in_order():
    import torch

    from fatnas.estimate.latency import carrier_configs, timed_parts
    from fatnas.model.network import FAT

    space = load_space("fat")
    carriers = carrier_configs(space)
    held = set().union(*({p.key for p in config_parts(c, 224)} for c in carriers))
    assert held == {p.key for p in space_parts(space)}
    assert len(carriers) <= 100  # the greedy cover stays near the 96 stride-2 FFN parts of stage 1 or 2
    cfg = carriers[0].replace(widths=[16, 16, 32, 32], heads=1)
    with torch.inference_mode():
        times = timed_parts(FAT(cfg).eval(), torch.randn(1, 3, 32, 32))
    assert len(times) == len(config_parts(cfg, 32)) and all(t > 0 for t in times)


def test_a_table_round_trips_and_prices_a_config(tiny_table, capsys):
    table = load_table(tiny_table)
    space = load_space(TINY_SPACE)
    assert (table.device, table.runtime, table.threads, table.batch, table.res) == ("cpu", "torch", 1, 1, 64)
    assert table.space == dict(name="tiny", fingerprint=space_fingerprint(space))
    assert set(table.parts) == {p.key for p in space_parts(space)}
    assert table.meta["versions"]["torch"] and table.meta["device_name"]
    assert json.loads(tiny_table.read_text()) == table.to_dict()  # what was written is what was read
    cfg = sample_configs(space, 1, seed=0)[0]
    by_hand = table.factor * sum(table.parts[p.key] for p in config_parts(cfg, 64)) * table.reference_ms
    assert table.predict_ms(cfg) == pytest.approx(by_hand) and by_hand > 0
    (tiny_table.parent / "net.yaml").write_text(yaml.safe_dump({"config": cfg.to_dict()}))
    status, out, err = in_process("cost", str(tiny_table.parent / "net.yaml"), "--res", "64", "--latency-model",
                                  str(tiny_table), "--json", capsys=capsys)
    assert status == 0, err
    modelled = json.loads(out)["modelled_latency"]
    assert modelled["latency_ms"] == pytest.approx(by_hand)
    assert modelled["source"] == "modelled" and modelled["table_fingerprint"] == file_fingerprint(tiny_table)


def _corrupt(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, message", [
    ("res", "was profiled at 64 px, not 224 px"),
    ("batch", "was profiled at batch 1, not 2"),
    ("other space", "no entry for"),
    ("garbage", "is not valid JSON"),
    ("not a table", "is not a fatnas latency table"),
    ("negative part", "'parts' must map part names to positive numbers"),
    ("missing", "not found"),
])
def test_a_table_that_does_not_fit_is_one_line_and_exit_2(case, message, tiny_table, tmp_path, capsys):
    data = json.loads(tiny_table.read_text())
    table, args = tiny_table, ["--res", "64"]
    if case == "res":
        args = ["--res", "224"]
    elif case == "batch":
        args = ["--res", "64", "--batch-size", "2"]
    elif case == "garbage":
        table = _corrupt(tmp_path / "t.json", '{"format": "fatnas-latency-table/1", "parts": {')
    elif case == "not a table":
        table = _corrupt(tmp_path / "t.json", json.dumps([1, 2, 3]))
    elif case == "negative part":
        data["parts"][next(iter(data["parts"]))] = -1.0
        table = _corrupt(tmp_path / "t.json", json.dumps(data))
    elif case == "missing":
        table = tmp_path / "absent.json"
    model = "fat_b0" if case == "other space" else str(_tiny_net(tmp_path))
    status, out, err = in_process("cost", model, "--latency-model", str(table), *args, capsys=capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def _tiny_net(folder):
    cfg = sample_configs(load_space(TINY_SPACE), 1, seed=0)[0]
    path = folder / "net.yaml"
    path.write_text(yaml.safe_dump({"config": cfg.to_dict()}))
    return path


def test_a_search_refuses_a_table_of_another_space_before_any_run_exists(tiny_table, isolated_dirs, capsys):
    status, out, err = in_process("search", "--latency-model", str(tiny_table), "--trials", "1", capsys=capsys)
    assert status == 2 and "was profiled at 64 px, not 224 px" in err
    doc = yaml.safe_load(shipped_spaces()["fat_mobile"].read_text())
    doc["resolution"] = 64
    (isolated_dirs / "space64.yaml").write_text(yaml.safe_dump(doc))
    status, out, err = in_process("search", "--latency-model", str(tiny_table), "--space",
                                  str(isolated_dirs / "space64.yaml"), "--trials", "1", capsys=capsys)
    assert status == 2 and "was profiled for space 'tiny'" in err
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


@needs_fashion_mnist
@pytest.mark.slow
def test_a_search_with_a_latency_model_records_modelled_latency(tiny_table, isolated_dirs, capsys):
    status, out, err = in_process("search", "--budget", "6MFLOPs", "--space", str(TINY_SPACE), "--trials", "2",
                                  "--run-id", "lm", "--quiet", "--no-references", "--sampler", "random",
                                  "--latency-model", str(tiny_table), *TINY_PROXY, capsys=capsys)
    assert status == 0, err
    recorded = os.path.relpath(tiny_table.resolve(), Path.cwd().resolve())  # no machine path in records
    assert f"latency: modelled from {recorded}" in out
    assert "fashion-mnist, latency modelled from " in out.split("Pareto front")[1]
    run = open_run("lm")
    latency = run.read_meta()["latency"]
    assert latency["source"] == "modelled" and latency["table"] == latency["model"] == recorded
    assert latency["table_fingerprint"] == file_fingerprint(tiny_table)
    assert (latency["runtime"], latency["device"], latency["threads"], latency["batch_size"]) == ("torch", "cpu", 1, 1)
    table = load_table(tiny_table)
    trials = run.trials()
    timed = trials[trials["latency_ms"].notna()]
    assert len(timed) >= 1
    from fatnas.model.config import FATConfig

    for _, row in timed.iterrows():
        assert row["latency_ms"] == pytest.approx(table.predict_ms(FATConfig.from_dict(json.loads(row["config"]))))
    from fatnas.report.dashboard import latency_origin

    assert "modelled from tiny.json" in latency_origin(run.read_meta())


def test_profile_settings_refuse_bad_values():
    with pytest.raises(LatencyModelError, match="--runtime 'tvm'"):
        ProfileSettings(runtime="tvm").check()
    with pytest.raises(LatencyModelError, match="--threads 0"):
        ProfileSettings(threads=0).check()


def test_latency_module_imports_without_optuna_ray_plotly_or_fvcore():
    code = ("import sys, fatnas.estimate.latency; "
            "heavy = [m for m in ('optuna', 'ray', 'plotly', 'fvcore') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_relative_timer_times_torch_on_the_settings_threads_whatever_torchs_are():
    seen = []

    class ThreadProbe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x

    with torch_threads(2):
        timer = RelativeTimer(ProfileSettings(threads=1, warmup=1, repeats=2), res=32, in_chans=3)
        timer.ratio(ThreadProbe(), (3, 32, 32))
        assert torch.get_num_threads() == 2
    assert seen == [1, 1, 1]


def test_a_runs_latencies_are_put_on_one_scale_whatever_the_load_when_each_was_timed():
    """The issue's case: the published FATs timed in the run's first, loaded minutes (fat_b0's median 131 ms in
    that process then), trials later on a quiet host (40-43 ms). On one scale, each is its ratio to fat_b0 times
    fat_b0's run-wide median, so fat_b1 (1.45x) is slower than fat_b0 and the trials (0.5x) faster than both."""
    import pandas as pd

    from fatnas.runs.store import one_latency_scale

    references = pd.DataFrame(dict(name=["fat_b0", "fat_b1"], latency_ms=[131.6, 100.0], latency_ratio=[1.0, 1.45],
                                   latency_reference_ms=[131.6, 69.0]))
    trials = pd.DataFrame(dict(trial=[0, 1, 2, 3], latency_ms=[20.4, 21.0, 42.7, 7.0],
                               latency_ratio=[0.51, 0.49, 1.0, None], latency_reference_ms=[40.0, 42.9, 42.7, None]))
    trials_out, references_out = one_latency_scale(trials, references)
    scale = pd.Series([131.6, 69.0, 40.0, 42.9, 42.7]).median()
    assert list(references_out["latency_ms"]) == pytest.approx([scale, 1.45 * scale])
    assert list(trials_out["latency_ms"][:3]) == pytest.approx([0.51 * scale, 0.49 * scale, scale])
    assert trials_out["latency_ms"][3] == 7.0  # a latency table's prediction: no ratio, left as it is
    b0, b1 = references_out["latency_ms"]
    assert b1 > b0 > trials_out["latency_ms"][0]
    # a run made before ratios were kept is left alone
    old, old_refs = one_latency_scale(trials.drop(columns=["latency_ratio"]), references.iloc[:0])
    assert list(old["latency_ms"]) == list(trials["latency_ms"]) and old_refs.empty


def test_fat_b0_is_the_clocks_reference_so_its_ratio_is_one_and_its_passes_join_the_reference():
    from fatnas.estimate.latency import measured_latency
    from fatnas.model.variants import create_model

    b0 = measured_latency(create_model("fat_b0").cfg, res=32, threads=1, warmup=1, repeats=3)  # drop path 0.05: same
    assert b0.ratio == 1.0 and b0.latency_ms == b0.reference_ms and b0.candidate == b0.reference
    b1 = measured_latency(create_model("fat_b1").cfg, res=32, threads=1, warmup=1, repeats=3)
    assert b1.reference_ms > 0 and b1.candidate != b1.reference  # timed against fat_b0, interleaved
