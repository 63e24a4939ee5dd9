"""Liveness: choices declared inert at a proxy resolution compute the same function; counts, collapse, sampling."""
from __future__ import annotations

import random

import optuna
import pytest
import torch
import yaml

from fatnas import cli
from fatnas.estimate.liveness import (
    ResolutionError,
    check_res,
    collapse,
    proxy_config,
    sampling_space,
    space_liveness,
    table_rows,
)
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.config import FATConfig, attention_keys, stage_output_sizes
from fatnas.model.network import FAT
from fatnas.model.space import grid, load_space, snap_heads, space_from_dict
from fatnas.runs.store import create_run, open_run
from fatnas.search import record_run, run_search, settings_from_meta, settings_to_meta
from fatnas.search.optuna_backend import make_sampler

from .conftest import TINY_PROXY, TINY_SPACE, needs_fashion_mnist

BASE = dict(widths=(8, 16, 16, 32), depths=(1, 1, 2, 2), heads=(1, 2, 2, 4), kernels=(3, 5, 3, 3),
            windows=(2, 2, 2, 1), ffn_ratios=(2, 2, 2, 2), ffn_kernels=(3, 3, 3, 3), in_chans=1, num_classes=10)
# a small space whose 3,072 points a brute force can enumerate
SMALL = dict(depths=[1], widths=[[16, 24], [32], [32], [64]], head_dims=[[8, 16], [16], [8, 16], [16]],
             kernels=[[3], [3, 5], [3, 5, 7], [7, 9]], windows=[[2, 8], [2], [1, 2], [1, 2]], ffn_ratios=[1],
             ffn_kernels=[[3], [3], [3, 5], [3, 5]], resolution=64)


def config(**changes) -> FATConfig:
    return FATConfig(**{**BASE, **changes})


def share_weights(src: FAT, dst: FAT, seed: int = 0) -> None:
    """dst takes src's tensors; of two conv kernels of different sizes, the larger gets the smaller at its
    centre and random non-zero taps around it (the taps that only ever meet zero padding)."""
    gen = torch.Generator().manual_seed(seed)
    source = src.state_dict()
    with torch.no_grad():
        for name, target in dst.state_dict().items():
            if name not in source:  # e.g. the extra downsampling steps of a larger window
                continue
            if source[name].shape == target.shape:
                target.copy_(source[name])
            else:
                small, large = sorted((source[name], target), key=lambda t: t.shape[-1])
                ring = (torch.rand(large.shape, generator=gen, dtype=large.dtype) + 0.5)
                ring *= torch.randn(large.shape, generator=gen, dtype=large.dtype).sign()
                c, k = (large.shape[-1] - small.shape[-1]) // 2, small.shape[-1]
                ring[..., c:c + k, c:c + k] = small
                large.copy_(ring)


def outputs(cfg_a: FATConfig, cfg_b: FATConfig, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Both networks in eval mode, b with a's weights, on one random res x res input (float64)."""
    torch.manual_seed(0)
    a, b = FAT(cfg_a).double().eval(), FAT(cfg_b).double().eval()
    share_weights(a, b)
    x = torch.randn(2, 1, res, res, dtype=torch.float64)
    with torch.no_grad():
        return a(x), b(x)


@pytest.mark.parametrize("res, a, b", [
    (28, dict(kernels=(3, 5, 3, 3)), dict(kernels=(3, 5, 7, 9))),  # 2x2 and 1x1 maps: 3 and 1 taps reach
    (64, dict(kernels=(3, 5, 7, 3)), dict(kernels=(3, 5, 9, 5))),  # 4x4 and 2x2 maps: 7 and 3 taps reach
    (28, dict(ffn_kernels=(3, 3, 3, 3)), dict(ffn_kernels=(3, 3, 5, 7))),  # stage 2 has a stride-2 block
    (28, dict(heads=(1, 2, 1, 1)), dict(heads=(1, 2, 4, 8))),  # window 2 on 2x2, window 1 on 1x1: one key
    (64, dict(heads=(1, 2, 2, 4), windows=(2, 2, 4, 2)), dict(heads=(1, 2, 16, 1), windows=(2, 2, 4, 2))),
])
def test_configs_differing_only_in_inert_choices_compute_the_same_function(res, a, b):
    cfg_a, cfg_b = config(**a), config(**b)
    assert proxy_config(cfg_a, res) == proxy_config(cfg_b, res)
    out_a, out_b = outputs(cfg_a, cfg_b, res)
    torch.testing.assert_close(out_a, out_b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("res, a, b", [
    (64, dict(kernels=(3, 5, 5, 3)), dict(kernels=(3, 5, 7, 3))),  # 5 vs 7 on a 4x4 map
    (28, dict(heads=(1, 1, 2, 4)), dict(heads=(1, 2, 2, 4))),  # window 2 on 4x4: four keys
    (28, dict(windows=(2, 2, 2, 1)), dict(windows=(2, 4, 2, 1))),
    (28, dict(ffn_kernels=(3, 3, 3, 3)), dict(ffn_kernels=(3, 5, 3, 3))),  # 3 vs 5 on a 4x4 map
])
def test_live_choices_compute_different_functions(res, a, b):
    cfg_a, cfg_b = config(**a), config(**b)
    assert proxy_config(cfg_a, res) != proxy_config(cfg_b, res)
    out_a, out_b = outputs(cfg_a, cfg_b, res)
    assert (out_a - out_b).abs().max() > 1e-7  # float64: equal functions agree to about 1e-15


@pytest.mark.parametrize("res", [28, 64, 112])
def test_a_network_and_its_proxy_config_compute_the_same_function(res):
    cfg = config(kernels=(3, 5, 7, 9), ffn_kernels=(5, 5, 5, 5), heads=(2, 2, 4, 4), windows=(4, 2, 2, 1))
    small = proxy_config(cfg, res)
    sides = [h for h, _ in stage_output_sizes(res, res)]
    assert small.kernels == tuple(min(k, 2 * s - 1) for k, s in zip(cfg.kernels, sides))
    assert small.heads == tuple(1 if attention_keys(s, s, w) == 1 else h
                                for h, w, s in zip(cfg.heads, cfg.windows, sides))
    out_full, out_proxy = outputs(small, cfg, res)
    torch.testing.assert_close(out_full, out_proxy, rtol=1e-9, atol=1e-9)
    assert proxy_config(small, res) == small


def test_proxy_config_examples_at_28_px():
    cfg = config(kernels=(3, 5, 7, 9), ffn_kernels=(5, 5, 5, 5), heads=(2, 2, 4, 4), windows=(4, 2, 2, 1))
    small = proxy_config(cfg, 28)  # maps 7, 4, 2, 1
    assert (small.kernels, small.ffn_kernels, small.heads) == ((3, 5, 3, 1), (5, 5, 3, 1), (2, 2, 1, 1))
    assert proxy_config(cfg, 224) == cfg


@pytest.mark.parametrize("res", [0, -3, "abc", "2.5", 1.5, True, None])
def test_a_bad_resolution_is_refused_naming_the_accepted_form(res):
    with pytest.raises(ResolutionError, match="expected a positive integer number of pixels"):
        check_res(res)
    with pytest.raises(ResolutionError):
        space_liveness(load_space("fat"), res)
    assert check_res("64") == 64


@pytest.mark.parametrize("res", [28, 40, 64, 112, 224])
def test_distinct_networks_match_a_brute_force_over_the_grid(res):
    space = space_from_dict(SMALL)
    points = grid(space)
    assert len(points) == space.size() == 3072
    lv = space_liveness(space, res)
    assert lv.points == space.size()
    assert lv.distinct == len({proxy_config(cfg, res) for cfg in points})
    assert lv.fraction == lv.distinct / lv.points


def test_head_dims_that_snap_to_the_same_heads_are_one_network():
    space = space_from_dict({**SMALL, "widths": [[24], [32], [32], [64]], "head_dims": [[16, 24], [16], [8], [16]]})
    assert snap_heads("head_dims", 24, 16) == snap_heads("head_dims", 24, 24) == 1
    lv = space_liveness(space, 224)
    assert lv.distinct == len({proxy_config(cfg, 224) for cfg in grid(space)}) == lv.points // 2


def test_classes_of_the_fat_space_at_64_px():
    lv = space_liveness(load_space("fat"), 64)
    assert lv.stage_maps == (16, 8, 4, 2)
    kernels_2, kernels_3 = lv.dimension(2, "kernels"), lv.dimension(3, "kernels")
    assert [(c.values, c.trained_as) for c in kernels_2.classes] == [((5,), 5), ((7, 9), 7)]
    assert kernels_2.live == (5, 7) and kernels_2.inert == {9: 7} and kernels_2.status == "partly inert"
    assert kernels_3.status == "inert" and kernels_3.inert == {9: 3}
    assert lv.dimension(3, "ffn_kernels").classes[0].values == (3, 5)
    assert [lv.dimension(s, "head_dims").one_key_windows for s in range(4)] == [(16,), (8,), (4,), (2,)]
    assert all(lv.dimension(s, key).status == "live" for s in range(4)
               for key in ("depths", "widths", "windows", "ffn_ratios"))
    inert = {(d.stage, d.key) for d in lv.inert_dimensions()}
    assert inert == {(2, "kernels"), (3, "kernels"), (3, "ffn_kernels")} | {(s, "head_dims") for s in range(4)}
    assert lv.summary().startswith("proxy at 64 px (stage maps 16/8/4/2): inert, trained as one: kernels_2 {7,9}->7, "
                                   "kernels_3 {7,9}->3, ffn_kernels_3 {3,5}->3; heads inert where the window leaves "
                                   "one key (stage 0: window 16; stage 1: window 8; stage 2: window 4; stage 3: "
                                   "window 2); 7.2% of the space's networks")
    assert table_rows(lv)[3]["stage 3 (2x2)"] == "{7,9}->3"


def test_heads_of_a_stage_with_one_key_for_every_window_are_fully_inert():
    lv = space_liveness(load_space("fat"), 28)  # stage 3 is 1x1
    heads = lv.dimension(3, "head_dims")
    assert heads.status == "inert" and [(c.values, c.trained_as) for c in heads.classes] == [((16, 32), 1)]
    assert "stage 3: every window" in lv.summary()
    assert space_liveness(load_space("fat_mobile"), 28).dimension(3, "head_dims").status == "fixed"


def test_everything_is_live_at_the_spaces_resolution():
    lv = space_liveness(load_space("fat_mobile"), 224)
    assert lv.inert_dimensions() == [] and lv.distinct == lv.points
    assert "every choice is live; 100.0% of the space's networks are distinct" in lv.summary()


def test_collapse_keeps_the_smallest_member_of_each_class():
    space = load_space("fat")
    small = collapse(space, 64)
    assert small.choices["kernels"] == ((3, 5), (3, 5, 7), (5, 7), (7,))
    assert small.choices["ffn_kernels"] == ((3, 5), (3, 5), (3, 5), (3,))
    assert {k: v for k, v in small.choices.items() if "kernels" not in k} == \
           {k: v for k, v in space.choices.items() if "kernels" not in k}
    assert collapse(space, 224).choices == space.choices
    reversed_order = space_from_dict({**SMALL, "kernels": [[3], [3], [3], [9, 7, 5]]})
    assert collapse(reversed_order, 28).choices["kernels"][3] == (5,)
    assert small.resolution == space.resolution and small.proxy_res is None


def test_conditional_sampling_never_draws_heads_of_a_one_key_stage():
    space = sampling_space(load_space("fat"), 28)
    sides = [h for h, _ in stage_output_sizes(28, 28)]
    rng, drawn_heads = random.Random(0), 0
    for _ in range(300):
        names: list[str] = []

        def suggest(name, choices):
            names.append(name)
            return rng.choice(choices)

        cfg = space.sample(suggest)
        for s, side in enumerate(sides):
            if attention_keys(side, side, cfg.windows[s]) == 1:
                assert f"head_dims_{s}" not in names
                assert cfg.heads[s] == snap_heads("head_dims", cfg.widths[s], space.choices["head_dims"][s][0])
            else:
                assert names.index(f"windows_{s}") < names.index(f"head_dims_{s}")
                drawn_heads += 1
    assert drawn_heads > 100


def test_without_a_proxy_resolution_sampling_is_unchanged():
    space = load_space("fat")
    names: list[str] = []
    space.sample(lambda name, choices: names.append(name) or choices[0])
    assert names == space.param_names()


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "gp"])
def test_optuna_samplers_work_with_the_conditional_space(sampler, caplog):
    space = sampling_space(space_from_dict(SMALL), 28)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(sampler, 0))
    for _ in range(14):
        trial = study.ask()
        cfg = space.sample(trial.suggest_categorical)
        study.tell(trial, [float(cfg.widths[0] + cfg.kernels[1]), float(sum(cfg.heads))])
    windows = [t.params["windows_0"] for t in study.trials]
    assert all(("head_dims_0" in t.params) == (t.params["windows_0"] == 2) for t in study.trials)
    assert 2 in windows and 8 in windows
    assert "sampled independently" not in caplog.text


def test_ray_define_by_run_space_and_config_of_agree():
    pytest.importorskip("ray")
    from fatnas.search.ray_backend.driver import suggest_config
    from fatnas.search.ray_backend.trainable import config_of

    space = sampling_space(load_space("fat"), 28)
    study = optuna.create_study(sampler=make_sampler("tpe", 0), directions=["maximize", "minimize"])
    for _ in range(20):
        trial = study.ask()
        assert suggest_config(space, trial) == dict(trial.params, trial=trial.number)
        cfg = config_of(space, trial.params)
        assert all((f"head_dims_{s}" in trial.params) != space.heads_inert(s, cfg.windows[s]) for s in range(4))
        assert ("head_dims_0" in trial.params) == (cfg.windows[0] == 4)  # 7x7 map: windows 8 and 16 leave one key
        study.tell(trial, [0.5, 1.0])


def test_settings_record_collapse_inert_and_old_runs_keep_every_value():
    from .test_search import tiny_settings

    settings = tiny_settings()
    meta = settings_to_meta(settings)
    assert meta["collapse_inert"] is True and meta["liveness"]["proxy_res"] == settings.proxy.res
    assert settings_from_meta(meta).collapse_inert is True
    old = {k: v for k, v in meta.items() if k not in ("collapse_inert", "liveness")}
    assert settings_from_meta(old).collapse_inert is False
    assert settings_from_meta(old).sampled_space == settings.space
    assert settings.sampled_space.proxy_res == settings.proxy.res


@pytest.fixture
def conditional_space(tmp_path):
    """The tiny space with two head dims and a stage-0 window that leaves one key at 28 px."""
    data = yaml.safe_load(TINY_SPACE.read_text())
    data.update(name="tiny_heads", head_dims=[8, 16], windows=[[2, 8], [2], [1], [1]])
    path = tmp_path / "tiny_heads.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@needs_fashion_mnist
def test_a_search_records_liveness_and_draws_no_inert_heads(isolated_dirs, conditional_space):
    from fatnas.estimate.cost import parse_budget

    from .test_search import tiny_settings

    space = load_space(conditional_space)
    proxy = ProxySettings(res=28, train_images=128, epochs=1, batch_size=32, val_images=200)
    settings = tiny_settings(space=space, budget=parse_budget("100MFLOPs", res=64), proxy=proxy, trials=3,
                             early_stopping=False)
    run = create_run("lv")
    record_run(run, settings, "optuna")
    run_search(run, settings, progress=False)
    meta = run.read_meta()
    assert meta["collapse_inert"] is True
    lv = meta["liveness"]
    assert lv["proxy_res"] == 28 and lv["stage_maps"] == [7, 4, 2, 1]
    assert {"stage": 0, "dimension": "head_dims", "status": "partly inert", "classes": [],
            "one_key_windows": [8]} in lv["inert"]
    assert lv["distinct_fraction"] == space_liveness(space, 28).fraction
    study = optuna.load_study(study_name=run.id, storage=run.storage_url)
    assert all(("head_dims_0" in t.params) == (t.params["windows_0"] == 2) for t in study.trials)
    assert all("head_dims_3" not in t.params for t in study.trials)  # window 1 on a 1x1 map


@needs_fashion_mnist
def test_cli_search_prints_the_liveness_line_and_keep_inert_is_recorded(isolated_dirs, conditional_space, capsys):
    code = cli.main(["search", "--budget", "100MFLOPs", "--space", str(conditional_space), "--trials", "1",
                     "--run-id", "ki", "--quiet", "--no-references", "--keep-inert", "--proxy-res", "28", *TINY_PROXY])
    out = capsys.readouterr().out
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("proxy at 28 px"))
    assert "stage maps 7/4/2/1" in line
    assert "heads inert where the window leaves one key (stage 0: window 8; stage 3: every window)" in line
    assert "trials draw every value (--keep-inert)" in line
    assert open_run("ki").read_meta()["collapse_inert"] is False


def test_cli_space_prints_the_table_and_the_fraction(capsys):
    code = cli.main(["space", "fat", "--res", "64"])
    out = capsys.readouterr().out
    assert code == 0
    assert "stage maps 16x16, 8x8, 4x4, 2x2" in out and "{7,9}->3" in out and "[1 key: w16]" in out
    assert "points: 835,884,417,024; distinct proxy networks at 64 px: 60,466,176,000 (7.2% of the space)" in out
    assert "FLOP" not in out


def test_cli_space_takes_several_resolutions(capsys):
    code = cli.main(["space", "fat_mobile", "--res", "28", "64", "--res", "112"])
    out = capsys.readouterr().out
    assert code == 0 and out.count("points: 20,155,392") == 3
    assert "6.2%" in out and "25.0%" in out and "50.0%" in out


@pytest.mark.parametrize("argv", [["space", "fat", "--res", "0"], ["space", "fat", "--res", "-3"],
                                  ["space", "fat", "--res", "abc"], ["space", "no_such_space"],
                                  ["space", "fat", "--res"]])
def test_cli_space_bad_input_is_one_line_and_exit_2(capsys, isolated_dirs, argv):
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 2 and out.out == "" and len(out.err.strip().splitlines()) == 1
    assert not (isolated_dirs / "runs").exists()
    if "--res" in argv and len(argv) == 4:
        assert "expected a positive integer number of pixels" in out.err
