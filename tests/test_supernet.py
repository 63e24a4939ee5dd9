"""The weight-sharing supernet: exact extraction, the slicing rules, training, resume and refusals."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from fatnas.errors import FatnasError
from fatnas.estimate.cost import analytic_cost, fvcore_cost
from fatnas.model.config import FATConfig
from fatnas.model.space import load_space, shipped_spaces
from fatnas.runs.store import RunError
from fatnas.supernet import Supernet, SupernetError
from fatnas.supernet.run import CHECKPOINT, WEIGHTS, SupernetTask, check_task, load_supernet, train_supernet
from fatnas.supernet.score import recalibrate_batchnorm
from fatnas.supernet.train import TrainSettings

from .conftest import ROOT, TINY_SPACE, needs_fashion_mnist


def _random_statistics(supernet: Supernet) -> None:
    """BatchNorm statistics unlike the defaults, so that a wrong slice of them shows."""
    gen = torch.Generator().manual_seed(1)
    for name, buffer in supernet.full.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(torch.randn(buffer.shape, generator=gen))
        elif name.endswith("running_var"):
            buffer.copy_(torch.rand(buffer.shape, generator=gen) + 0.5)


def _sample(space, rng: random.Random) -> FATConfig:
    return space.sample(lambda name, options: rng.choice(options))


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_extracted_networks_compute_the_supernets_active_path(name):
    space = load_space(name)
    supernet = Supernet(space, in_chans=3, num_classes=7).eval()
    _random_statistics(supernet)
    rng = random.Random(name)
    x = torch.randn(2, 3, 48, 48)
    for cfg in [supernet.largest, supernet.smallest] + [_sample(space, rng) for _ in range(4)]:
        supernet.set_active(cfg)
        network = supernet.extract(cfg).eval()
        assert type(network).__name__ == "FAT" and network.cfg == supernet.fit(cfg)
        torch.testing.assert_close(network(x), supernet(x), atol=1e-5, rtol=0)
        assert sum(p.numel() for p in network.parameters()) == analytic_cost(network.cfg, 224).params


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_with_kernel_transforms_extraction_stays_exact_and_small_kernels_are_transformed(name):
    space = load_space(name)
    supernet = Supernet(space, in_chans=3, num_classes=7, kernel_transform=True).eval()
    _random_statistics(supernet)
    gen = torch.Generator().manual_seed(2)
    for matrix in supernet.kernel_transforms.matrices.values():  # away from identity, so a missed one shows
        matrix.data += 0.1 * torch.randn(matrix.shape, generator=gen)
    rng = random.Random(name)
    x = torch.randn(2, 3, 48, 48)
    for cfg in [supernet.smallest] + [_sample(space, rng) for _ in range(3)]:
        supernet.set_active(cfg)
        torch.testing.assert_close(supernet.extract(cfg).eval()(x), supernet(x), atol=1e-5, rtol=0)
    small = supernet.fit(supernet.smallest)
    k = small.kernels[0]
    pos = supernet.full.stages[0][0].pos.weight
    c = (pos.shape[-1] - k) // 2
    if c > 0:  # the smallest positional kernel: the crop times its matrix, not the crop itself
        crop = pos[:small.widths[0], :, c:c + k, c:c + k]
        assert not torch.allclose(supernet.extract(small).stages[0][0].pos.weight, crop)


def test_kernel_transform_matrices_learn_from_the_sub_networks_using_them():
    space = load_space("fat")
    supernet = Supernet(space, in_chans=1, num_classes=3, kernel_transform=True)
    sizes = supernet.kernel_transforms.sizes
    assert sizes["stages.2.0.pos.weight"] == [7, 5] and sizes["stages.0.0.ffn.dw.weight"] == [3]
    assert "stem.layers.0.weight" not in sizes  # a kernel no config shrinks has no matrix
    supernet.set_active(supernet.smallest)
    supernet(torch.randn(2, 1, 64, 64)).sum().backward()
    matrices = supernet.kernel_transforms.matrices
    assert matrices["stages__2__0__pos__weight__k5"].grad.abs().sum() > 0
    assert matrices["stages__2__0__pos__weight__k7"].grad.abs().sum() > 0  # the step on the way down to 5
    assert matrices["stages__3__2__pos__weight__k7"].grad is not None  # stage 3's one block: its strided last


def test_an_extracted_networks_flops_equal_the_analytic_cost():
    space = load_space(TINY_SPACE)
    supernet = Supernet(space, in_chans=1, num_classes=4)
    cfg = supernet.fit(_sample(space, random.Random(3)))
    network = supernet.extract(cfg).eval()
    assert fvcore_cost(network, 1, 64).flops == analytic_cost(cfg, 64).flops


def test_slices_follow_the_depth_width_kernel_and_head_rules():
    space = load_space("fat")
    supernet = Supernet(space, in_chans=1, num_classes=4)
    big = supernet.full
    cfg = supernet.fit(supernet.smallest.replace(depths=(2, 1, 3, 1), kernels=(3, 3, 5, 7), heads=(2, 4, 8, 16)))
    net = supernet.extract(cfg)
    # depth: the first d - 1 blocks, then the stage's last (strided) block
    assert torch.equal(net.stages[2][1].pos.weight, big.stages[2][1].pos.weight[:128, :, 2:7, 2:7])
    last = len(big.stages[2]) - 1
    assert torch.equal(net.stages[2][2].ffn.fc2.weight, big.stages[2][last].ffn.fc2.weight[:256, :256])
    assert torch.equal(net.stages[0][1].pos.weight, big.stages[0][2].pos.weight[:32, :, 1:4, 1:4])
    # kv: K and V halves sliced apart (heads only regroup the same channels)
    kv, full_kv = net.stages[1][0].mixer.kv.weight, big.stages[1][2].mixer.kv.weight
    assert torch.equal(kv[:64], full_kv[:64, :64]) and torch.equal(kv[64:], full_kv[128:192, :64])
    # head: a prefix of the input features
    assert torch.equal(net.head.fc.weight, big.head.fc.weight[:, :256])


def test_training_a_sub_network_updates_only_its_slice_of_the_shared_weights():
    space = load_space(TINY_SPACE)
    supernet = Supernet(space, in_chans=1, num_classes=3)
    cfg = supernet.smallest
    supernet.set_active(cfg)
    supernet(torch.randn(4, 1, 32, 32)).sum().backward()
    grad = supernet.full.stages[0][0].ffn.fc1.weight.grad
    hidden, width = int(16 * 1), 16
    assert grad[:hidden, :width].abs().sum() > 0
    assert grad[hidden:].abs().sum() == 0 and grad[:, width:].abs().sum() == 0


def test_a_config_the_supernet_cannot_hold_is_refused():
    supernet = Supernet(load_space(TINY_SPACE), in_chans=1, num_classes=3)
    too_wide = supernet.smallest.replace(widths=(16, 32, 32, 128))
    with pytest.raises(SupernetError, match=r"widths\[3\] = 128 is above the supernet's largest choice 64"):
        supernet.set_active(too_wide)
    assert isinstance(SupernetError("x"), FatnasError)


def test_recalibration_measures_the_statistics_of_the_images():
    from fatnas.estimate.data import ProxyImages

    space = load_space(TINY_SPACE)
    network = Supernet(space, in_chans=1, num_classes=3).extract(space.sample(lambda n, o: o[0]))
    pixels = torch.randn(64, 32, 32, 1) * 3 + 2
    images = ProxyImages(pixels=pixels, labels=torch.zeros(64, dtype=torch.int64), fill=torch.zeros(1))
    recalibrate_batchnorm(network, images, batch=16)
    bn = network.stem.layers[1]
    conv = network.stem.layers[0]
    out = conv(pixels.permute(0, 3, 1, 2))
    torch.testing.assert_close(bn.running_mean, out.mean(dim=(0, 2, 3)).detach(), atol=1e-4, rtol=1e-4)
    assert not network.training


def test_a_finetuned_score_trains_a_copy_the_same_way_for_every_call_and_leaves_the_supernet_alone():
    from fatnas.estimate.data import DataSplit
    from fatnas.supernet.score import FinetuneSettings, SubnetScorer

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (96, 1, 28, 28), dtype=torch.uint8, generator=gen)
    y = torch.arange(96) % 3
    data = DataSplit(train_x=x, train_y=y, val_x=x[:16], val_y=y[:16], num_classes=3, in_chans=1, name="random",
                     image_size=(28, 28), mean=(0.5,), std=(0.25,), train_indices=torch.arange(96),
                     val_indices=torch.arange(16))
    space = load_space(TINY_SPACE)
    supernet = Supernet(space, in_chans=1, num_classes=3)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    cfg = supernet.fit(_sample(space, random.Random(5)))
    tuned = SubnetScorer(supernet, data, 32, recal_images=32, val_images=16,
                         finetune=FinetuneSettings(steps=2, lr=1e-2, batch_size=16))
    plain = SubnetScorer(supernet, data, 32, recal_images=32, val_images=16)
    a, b, c = tuned.network(cfg), tuned.network(cfg), plain.network(cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))  # seeded: the same every call
    assert not torch.equal(a.head.fc.weight, c.head.fc.weight)  # it did train
    assert all(torch.equal(v, before[k]) for k, v in supernet.state_dict().items())  # on a copy
    assert len(tuned.tune) == 2 * 16 and not a.training


def _tiny_task(**changes) -> SupernetTask:
    return SupernetTask(**{"space": load_space(TINY_SPACE), "classes": (0, 2, 4, 6), **changes})


TINY_RECIPE = TrainSettings(res=32, epochs=1, train_images=192, batch_size=32, eval_points=2, recal_images=64,
                            val_images=128)


@pytest.mark.slow  # trains a supernet, then a search or study: whole runs
@needs_fashion_mnist
def test_a_supernet_trains_records_its_recipe_and_curves_and_scores():
    run = train_supernet(_tiny_task(), TINY_RECIPE, run_id="sn", progress=False, argv=["fatnas", "supernet"])
    meta = run.read_meta()
    assert meta["kind"] == "supernet" and meta["state"] == "finished"
    assert meta["train"]["sampling"] == "sandwich" and meta["train"]["distill"] is False
    assert meta["task"]["classes"] == [0, 2, 4, 6] and meta["task"]["space"]["name"] == "tiny"
    assert meta["train_seconds"] > 0
    assert meta["weights_sha256"] == hashlib.sha256((run.path / WEIGHTS).read_bytes()).hexdigest()
    curves = run.read_table("curves.csv")
    assert sorted(curves.subnet.unique()) == ["largest", "smallest"] and sorted(curves.step.unique()) == [3, 6]
    trained = load_supernet("sn")
    assert trained.provenance == f"supernet:sn@{meta['weights_sha256'][:12]}"
    score = trained.scorer().score(trained.supernet.smallest)
    assert 0 <= score.accuracy <= 1 and score.val_loss > 0


@pytest.mark.slow  # trains two supernets
@needs_fashion_mnist
def test_a_few_shot_supernet_starts_from_its_parents_inherited_weights(isolated_dirs, tmp_path):
    import dataclasses

    train_supernet(_tiny_task(), TINY_RECIPE, run_id="parent", progress=False)
    sub = tmp_path / "sub.yaml"  # the sub-space of the first stage's wider choice
    sub.write_text(TINY_SPACE.read_text().replace("widths: [[16, 24],", "widths: [[24],"))
    frozen = dataclasses.replace(TINY_RECIPE, lr=0.0, init_from="parent")  # no learning: the start shows
    child = train_supernet(_tiny_task(space=load_space(sub)), frozen, run_id="child", progress=False)
    parent = load_supernet("parent")
    assert child.read_meta()["init_provenance"] == parent.provenance
    cfg = load_supernet("child").supernet.smallest
    inherited, started = parent.supernet.extract(cfg), load_supernet("child").supernet.extract(cfg)
    assert all(torch.equal(a, b) for a, b in zip(inherited.parameters(), started.parameters()))
    with pytest.raises(FatnasError, match="--init-from parent: trained for"):
        train_supernet(SupernetTask(space=load_space(sub), classes=(0, 2)), frozen, run_id="other-classes")
    with pytest.raises(SupernetError, match="above the supernet's largest choice"):
        wider = sub.read_text().replace("widths: [[24],", "widths: [[32],")
        (tmp_path / "wider.yaml").write_text(wider)
        train_supernet(_tiny_task(space=load_space(tmp_path / "wider.yaml")), frozen, run_id="too-wide")
    assert not any((isolated_dirs / "runs" / name).exists() for name in ("other-classes", "too-wide"))


def _train_cli(run_id: str, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "supernet", "train", "--space", str(TINY_SPACE), "--classes", "0,2",
            "--res", "32", "--epochs", "4", "--train-images", "256", "--batch-size", "32", "--recal-images", "64",
            "--threads", "1", "--quiet", "--run-id", run_id, "--distill", *extra]  # distillation: the other path


@needs_fashion_mnist
def test_a_training_killed_with_sigkill_resumes_to_the_weights_of_an_uninterrupted_one(isolated_dirs):
    runs = isolated_dirs / "runs"
    env = dict(os.environ)
    subprocess.run(_train_cli("whole"), check=True, capture_output=True, timeout=300, env=env)
    proc = subprocess.Popen(_train_cli("killed", "--checkpoint-minutes", "0.0001"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = runs / "killed" / CHECKPOINT
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.is_file() and torch.load(checkpoint, weights_only=True)["step"] >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (runs / "killed" / WEIGHTS).exists()
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "supernet", "train", "--resume", "killed", "--quiet"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load((runs / "killed" / "run.yaml").read_text())["train"]["distill"] is True
    a = torch.load(runs / "whole" / WEIGHTS, weights_only=True)["state_dict"]
    b = torch.load(runs / "killed" / WEIGHTS, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


@pytest.mark.slow  # trains a supernet, then a search or study: whole runs
@needs_fashion_mnist
def test_a_damaged_missing_or_foreign_supernet_is_refused():
    train_supernet(_tiny_task(), TINY_RECIPE, run_id="sn", progress=False)
    trained = load_supernet("sn")
    space = load_space(TINY_SPACE)
    check_task(trained, space=space, dataset="fashion-mnist", classes=(0, 2, 4, 6), res=32)
    with pytest.raises(FatnasError, match="trained for classes"):
        check_task(trained, space=space, dataset="fashion-mnist", classes=(), res=32)
    with pytest.raises(FatnasError, match="trained for resolution 32"):
        check_task(trained, space=space, dataset="fashion-mnist", classes=(0, 2, 4, 6), res=56)
    with pytest.raises(FatnasError, match="trained for space 'tiny'"):
        check_task(trained, space=load_space("fat"), dataset="fashion-mnist", classes=(0, 2, 4, 6), res=32)
    weights = trained.run.path / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RunError, match="sha256 does not match"):
        load_supernet("sn")
    weights.unlink()
    with pytest.raises(RunError, match="has not finished training"):
        load_supernet("sn")
    with pytest.raises(RunError, match="not found"):
        load_supernet("nothing-here")


@pytest.mark.slow  # trains a supernet, then a search or study: whole runs
@needs_fashion_mnist
def test_a_search_scores_its_candidates_with_a_supernet_and_names_it(isolated_dirs):
    from fatnas.runs.store import create_run, open_run
    from fatnas.search import record_run, run_search
    from fatnas.search.api import search_settings

    train_supernet(_tiny_task(), TINY_RECIPE, run_id="sn", progress=False)
    settings = search_settings(budget="6MFLOPs", space=str(TINY_SPACE), trials=6, sampler="random",
                               classes="0,2,4,6", supernet="sn", references=True)
    assert settings.estimator == "supernet:sn" and settings.proxy.res == 32
    default = search_settings(budget="6MFLOPs", space=str(TINY_SPACE), classes="0,2,4,6", supernet="sn")
    assert (default.sampler, default.trials) == ("tpe", 300)  # hundreds of cheap trials, TPE as for the proxy
    proxy_default = search_settings(budget="6MFLOPs", space=str(TINY_SPACE))
    assert (proxy_default.sampler, proxy_default.trials) == ("tpe", 20)
    run = create_run("s")
    record_run(run, settings, "optuna")
    run_search(run, settings, progress=False)
    meta, trials = open_run("s").read_meta(), open_run("s").trials()
    provenance = load_supernet("sn").provenance
    assert meta["estimator"] == "supernet:sn" and meta["estimator_provenance"] == provenance
    objective = meta["objectives"]["accuracy"]
    assert "inherited from supernet sn" in objective and "proxy" not in objective
    from fatnas.report.dashboard import load_run_data
    assert f"Accuracy objective: {objective}" in load_run_data(open_run("s")).trust.describe()
    scored = trials[trials.state == "COMPLETE"]
    assert len(scored) == 6 and (scored.estimator == provenance).all() and scored.accuracy.between(0, 1).all()
    with pytest.raises(FatnasError, match="trained for classes"):
        search_settings(budget="6MFLOPs", space=str(TINY_SPACE), supernet="sn")
    _scores_on_its_own_split_whatever_split_the_caller_drew(scored.config.iloc[0])
    _export_with_weights_starts_from_the_inherited_weights(open_run("s"), int(scored.trial.iloc[0]))
    _has_no_seed_noise_and_is_confirmed_by_training(open_run("s"))


def _has_no_seed_noise_and_is_confirmed_by_training(run) -> None:
    """A supernet scores alike on every seed: its run records the sampling error; the confirm stage trains."""
    from fatnas.study.confirm import confirm_settings, prepare_confirm, run_confirm

    noise = run.read_meta()["noise"]
    assert noise["source"] == "binomial" and "no seed noise to measure" in noise["note"] and noise["std"] > 0
    assert not (run.path / "noise.csv").exists() and (run.trials()["accuracy_low"] < run.trials()["accuracy"]).all()
    table = run_confirm(prepare_confirm("s", confirm_settings("4trainings", recipe="train_images=128", networks=2)))
    assert (table["seeds"] >= 2).sum() == 2 and "res=32" in run.read_meta()["confirm"]["recipe"]


def _scores_on_its_own_split_whatever_split_the_caller_drew(config: str) -> None:
    """A search with another seed draws another split, whose validation images the supernet may have trained on."""
    import json

    from fatnas.estimate.base import make_estimator
    from fatnas.estimate.data import load_dataset

    cfg = FATConfig.from_dict(json.loads(config))
    other = load_dataset("fashion-mnist", seed=1, classes=(0, 2, 4, 6))
    estimate = make_estimator("supernet:sn", data=other).estimate(cfg)
    own = load_supernet("sn").scorer().score(cfg)
    assert (estimate.score, estimate.metrics["val_loss"]) == (own.accuracy, own.val_loss)
    assert load_supernet("sn").scorer(other).score(cfg).val_loss != own.val_loss  # the caller's split does differ


def _export_with_weights_starts_from_the_inherited_weights(run, trial: int) -> None:
    import timm

    from fatnas.model.variants import create_model
    from fatnas.runs.export import export_trial, register_timm_models
    from fatnas.supernet.estimator import SupernetEstimator

    exported = export_trial(run, trial, "found", with_weights=True)
    assert exported.source["weights"] == load_supernet("sn").provenance
    model = create_model("found", pretrained=True).eval()
    expected = SupernetEstimator.from_spec("sn").network(model.cfg)
    x = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(model(x), expected(x), atol=1e-5, rtol=0)
    tuned = create_model("found", pretrained=True, num_classes=10)
    assert tuned.head.fc.out_features == 10
    assert torch.equal(tuned.stem.layers[0].weight, model.stem.layers[0].weight)
    register_timm_models()
    assert torch.equal(timm.create_model("found", pretrained=True).head.fc.weight, model.head.fc.weight)
    with pytest.raises(FatnasError, match="has no exported weights"):
        create_model("fat_b0", pretrained=True)


def test_a_search_naming_a_missing_supernet_is_one_line_and_exit_2(isolated_dirs):
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--budget", "2GFLOPs", "--supernet", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "run 'nope' not found" in out.stderr
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


@pytest.mark.slow  # trains a supernet, then a search or study: whole runs
@needs_fashion_mnist
def test_a_fidelity_study_ranks_networks_with_a_supernet_as_a_low(isolated_dirs):
    from fatnas.runs.store import create_run
    from fatnas.study.fidelity import parse_fidelity, record_study, run_study
    from fatnas.study.fidelity.settings import StudySettings, check_scorers, resume_study_settings

    from .test_fidelity import tiny_study

    train_supernet(SupernetTask(space=load_space(TINY_SPACE)), TINY_RECIPE, run_id="sn", progress=False)
    settings = tiny_study(lows=(parse_fidelity("res=32,train_images=64,val_images=100"),), proxies=("params",))
    run = create_run("f")
    record_study(run, settings)
    run_study(run, settings, progress=False)
    # a finished study takes the supernet later, as `fidelity --resume f --low supernet:sn` does
    settings = resume_study_settings(run, lows=["supernet:sn"])
    assert settings.scorers == ("supernet:sn",) and run.read_meta()["scorers"] == ["supernet:sn"]
    check_scorers(settings)
    summary = run_study(run, settings, progress=False)
    rows = run.read_table("fidelity.csv")
    scored = rows[rows.kind == "weight-sharing"]
    assert set(scored.metric) == {"accuracy", "loss"} and scored.arch.nunique() == len(rows.arch.unique())
    named = summary.set_index("estimator")
    assert {"supernet:sn:accuracy", "supernet:sn:-loss"} <= set(named.index)
    assert named.loc["supernet:sn:accuracy", "kind"] == "weight-sharing"
    assert -1 <= named.loc["supernet:sn:accuracy", "kendall_tau"] <= 1
    assert StudySettings.from_meta(run.read_meta()).scorers == ("supernet:sn",)
    wrong = tiny_study(scorers=("supernet:sn",))  # its low trains at 56 px; the supernet was trained at 32
    with pytest.raises(FatnasError, match="trained for resolution 32"):
        check_scorers(wrong)


def test_weights_are_refused_for_a_run_whose_estimator_keeps_none(tiny_run):
    from fatnas.runs.export import ExportError, export_trial

    trial = int(tiny_run.trials().query("state == 'COMPLETE'").trial.iloc[0])
    with pytest.raises(ExportError, match="keeps no weights; --with-weights needs a supernet search"):
        export_trial(tiny_run, trial, "nope", with_weights=True)
    from fatnas.model.variants import variants_dir

    assert not (variants_dir() / "nope.yaml").exists()
