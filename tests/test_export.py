"""Export: searched configs become named variants that build, show and cost in a new process."""
from __future__ import annotations

import json

import pytest
import yaml

from fatnas.cli import main
from fatnas.estimate.cost import analytic_cost
from fatnas.model.variants import create_model, get_config, list_models, variant_metadata, variants_dir
from fatnas.runs.export import DEPLOY_SEED, default_prefix, register_timm_models
from fatnas.runs.store import Run

from .conftest import run_cli
from .tiny_run import copy_run, shared_tiny_run

RES = 64  # the tiny space's resolution: trials.csv FLOPs are priced there


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Run:
    return shared_tiny_run(tmp_path_factory)


@pytest.fixture
def run(shared, isolated_dirs) -> Run:
    """The shared run, copied into this test's runs folder (FATNAS_RUNS_DIR) as `tiny-run`."""
    return copy_run(shared, isolated_dirs / "runs")


def complete_trials(run: Run) -> list[int]:
    trials = run.trials()
    return [int(t) for t in trials.loc[trials["state"] == "COMPLETE", "trial"]]


def in_process(*args: str, capsys) -> tuple[int, str]:
    """cli.main in this process (fast), returning the exit status and stderr."""
    status = main(list(args))
    return status, capsys.readouterr().err


def test_exported_trial_builds_shows_and_costs_in_a_new_process(run):
    row = run.trials().set_index("trial").loc[complete_trials(run)[0]]
    out = run_cli("export", "tiny-run", "--trial", str(row.name), "--name", "mynet")
    assert out.returncode == 0, out.stderr
    path = variants_dir() / "mynet.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["config"] == json.loads(row["config"])
    source = data["source"]
    assert (source["run"], source["trial"], source["params"], source["flops"]) == \
        ("tiny-run", row.name, row["params"], row["flops"])
    assert source["proxy_accuracy"] == row["accuracy"] and source["latency_ms"] == pytest.approx(row["latency_ms"])
    assert source["flop_convention"].startswith(f"fvcore total at {RES}x{RES}") and source["exported_at"]

    show = run_cli("show", "mynet", "--res", str(RES))
    assert show.returncode == 0, show.stderr
    assert f"params: {int(row['params']):,}" in show.stdout and f"({int(row['flops']):,})" in show.stdout
    cost = run_cli("cost", "mynet", "--json", "--res", str(RES))
    assert cost.returncode == 0, cost.stderr
    figures = json.loads(cost.stdout)
    assert (figures["params"], figures["flops"]) == (row["params"], row["flops"])


def test_pareto_export_round_trips_params_and_flops(run):
    out = run_cli("export", "tiny-run", "--pareto")
    assert out.returncode == 0, out.stderr
    front = run.pareto()
    names = [f"tiny_run_t{int(t)}" for t in front["trial"]]
    assert all(n in out.stdout for n in names) and set(names) <= set(list_models())
    for name, (_, row) in zip(names, front.iterrows()):
        model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) == row["params"]
        assert analytic_cost(get_config(name), RES).flops == row["flops"]
        assert variant_metadata(name)["trial"] == row["trial"]
        assert variant_metadata(name)["proxy_accuracy"] == row["accuracy"]


def test_an_existing_name_is_kept_unless_forced(run, capsys):
    first, second = complete_trials(run)[:2]
    assert in_process("export", "tiny-run", "--trial", str(first), "--name", "keep_me", capsys=capsys)[0] == 0
    path = variants_dir() / "keep_me.yaml"
    before = path.read_bytes()

    status, err = in_process("export", "tiny-run", "--trial", str(second), "--name", "keep_me", capsys=capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "'keep_me' already exists" in err and "--force" in err
    assert path.read_bytes() == before

    # --pareto checks every name before writing any
    prefix = "keep_me_"
    names = [f"{prefix}{int(t)}" for t in run.pareto()["trial"]]
    taken = variants_dir() / f"{names[-1]}.yaml"
    taken.write_bytes(before)
    status, err = in_process("export", "tiny-run", "--pareto", "--prefix", prefix, capsys=capsys)
    assert status == 2 and f"'{names[-1]}' already exists" in err
    assert not any((variants_dir() / f"{n}.yaml").exists() for n in names[:-1])

    status, _ = in_process("export", "tiny-run", "--trial", str(second), "--name", "keep_me", "--force", capsys=capsys)
    assert status == 0 and variant_metadata("keep_me")["trial"] == second
    assert in_process("export", "tiny-run", "--pareto", "--prefix", prefix, "--force", capsys=capsys)[0] == 0
    assert all((variants_dir() / f"{n}.yaml").exists() for n in names)


@pytest.mark.parametrize("args, message", [
    (["--trial", "{done}", "--name", "Bad-Name"], "malformed variant name 'Bad-Name'"),
    (["--trial", "{done}", "--name", "1abc"], "malformed variant name '1abc'"),
    (["--trial", "{done}", "--name", "fat_b0"], "'fat_b0' is a published FAT variant"),
    (["--trial", "{done}", "--name", "fat_b0", "--force"], "'fat_b0' is a published FAT variant"),
    (["--trial", "999", "--name", "ok_name"], "run 'tiny-run' has no trial 999; complete trials:"),
    (["--trial", "{not_done}", "--name", "ok_name"], "not COMPLETE"),
    (["--pareto", "--prefix", "Bad-"], "malformed variant name 'Bad-"),
    (["--trial", "{done}"], "needs --name NAME"),
    ([], "give --trial N --name NAME, or --pareto"),
])
def test_bad_export_input_is_one_line_exit_2_and_writes_nothing(run, capsys, args, message):
    trials = run.trials()
    not_done = trials.loc[trials["state"] != "COMPLETE", "trial"]
    if "{not_done}" in args and not_done.empty:
        pytest.skip("every trial of the shared run completed")
    values = dict(done=complete_trials(run)[0], not_done=int(not_done.iloc[0]) if not not_done.empty else -1)
    status, err = in_process("export", "tiny-run", *[a.format(**values) for a in args], capsys=capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not variants_dir().exists() or not any(variants_dir().iterdir())


def test_unknown_run_exits_2_in_a_new_process(isolated_dirs):
    out = run_cli("export", "no-such-run", "--trial", "0", "--name", "x")
    assert out.returncode == 2
    assert "run 'no-such-run' not found" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not variants_dir().exists()


@pytest.mark.parametrize("run_id, prefix", [("search-20250101-120000", "search_20250101_120000_t"),
                                            ("Tiny.Run", "tiny_run_t"), ("2024run", "run_2024run_t")])
def test_default_pareto_prefix_is_a_valid_name(run_id, prefix):
    assert default_prefix(run_id) == prefix


def test_timm_creates_registered_variants(run, capsys):
    timm = pytest.importorskip("timm")
    trial = complete_trials(run)[0]
    assert in_process("export", "tiny-run", "--trial", str(trial), "--name", "timm_net", capsys=capsys)[0] == 0
    assert "timm_net" in register_timm_models()  # newly registered; fat_b0 may have been registered earlier
    assert {"fat_b0", "timm_net"} <= set(timm.list_models("*"))
    model = timm.create_model("timm_net")
    params = run.trials().set_index("trial").loc[trial, "params"]
    assert sum(p.numel() for p in model.parameters()) == params
    assert timm.create_model("fat_b0", num_classes=10).head.fc.out_features == 10


# ---------------------------------------------------------------- deployment formats

def _onnx_matches_pytorch(path, name: str, res: int) -> float:
    """Our own check: ONNX Runtime and PyTorch on a fresh input of batch 3 (the file's batch is dynamic)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    torch.manual_seed(DEPLOY_SEED)  # the weights the export was initialised with
    model = create_model(name).eval()
    x = torch.randn(3, 3, res, res)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        return float(np.abs(out - model(x).numpy()).max())


@pytest.mark.slow  # the ONNX exporter traces and builds a graph: about 12 s, like a build
def test_onnx_export_of_fat_b0_matches_pytorch_under_onnx_runtime(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "b0.onnx"
    assert in_process("export", "--model", "fat_b0", "--format", "onnx", "-o", str(out), "--res", "96",
                      capsys=capsys)[0] == 0
    assert _onnx_matches_pytorch(out, "fat_b0", 96) <= 1e-4


@pytest.mark.slow
def test_onnx_export_of_a_trial_matches_pytorch_and_pt2_reloads(run, capsys):
    pytest.importorskip("onnxruntime")
    import torch

    trial = complete_trials(run)[0]
    status, err = in_process("export", "tiny-run", "--trial", str(trial), "--name", "onnx_net", "--format", "onnx",
                             capsys=capsys)
    assert status == 0, err
    assert (variants_dir() / "onnx_net.yaml").is_file()
    assert _onnx_matches_pytorch(variants_dir() / "onnx_net.onnx", "onnx_net", RES) <= 1e-4
    assert in_process("export", "--model", "onnx_net", "--format", "pt2", capsys=capsys)[0] == 0
    program = torch.export.load(str(variants_dir() / "onnx_net.pt2")).module()
    x = torch.randn(2, 3, RES, RES)
    torch.manual_seed(DEPLOY_SEED)
    with torch.no_grad():
        assert torch.allclose(program(x), create_model("onnx_net").eval()(x), atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--model", "fat_b0", "--format", "tflite"], "accepted yaml (a variant), onnx or pt2"),
    (["--model", "fat_b0"], "needs --format onnx or pt2"),
    (["--model", "no_such_net", "--format", "onnx"], "unknown model 'no_such_net'"),
    (["tiny-run", "--trial", "0", "--name", "x", "-o", "x.onnx"], "-o and --res go with --model"),
])
def test_bad_deployment_export_is_one_line_and_writes_nothing(args, message, capsys):
    status, err = in_process("export", *args, capsys=capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not variants_dir().exists()
