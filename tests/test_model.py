"""The FAT builder against the reference table, plus forward/backward, training and the registry."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from fatnas.estimate.cost import analytic_cost, fvcore_cost
from fatnas.model.config import ConfigError, FATConfig, plan
from fatnas.model.network import FAT, DropPath
from fatnas.model.variants import PUBLISHED, UnknownModelError, create_model, get_config, list_models, variants_dir
from tests.reference import OPS, REFERENCE, reference_ops

TINY = dict(widths=[8, 16, 16, 24], depths=[1, 1, 2, 1], heads=[2, 2, 4, 4], kernels=3,
            windows=[4, 2, 1, 1], ffn_ratios=2.0, ffn_kernels=3)


def _row_id(row: tuple) -> str:
    return f"{row[0]}@{row[1]}"


# ---------------------------------------------------------------- reference table

@pytest.mark.parametrize("row", REFERENCE, ids=_row_id)
def test_built_model_matches_reference_table(row):
    name, res, params, total = row[:4]
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == params
    cost = fvcore_cost(model, 3, res)
    assert cost.params == params
    # Full dict equality: the reference operators and no other operator fvcore counted.
    assert cost.flops_by_operator == reference_ops(row)
    assert cost.flops == total


@pytest.mark.parametrize("row", REFERENCE, ids=_row_id)
def test_analytic_cost_matches_reference_table(row):
    name, res, params, total = row[:4]
    cost = analytic_cost(get_config(name), res)
    assert cost.params == params
    assert cost.flops_by_operator == reference_ops(row)
    assert cost.flops == total
    assert (cost.height, cost.width) == (res, res)


def test_reference_table_covers_every_published_variant():
    assert {row[0] for row in REFERENCE} == set(PUBLISHED)
    assert all(len(row) == 4 + len(OPS) for row in REFERENCE)
    assert all(row[3] == sum(row[4:]) for row in REFERENCE)


# ---------------------------------------------------------------- forward at odd sizes and channels

def test_forward_odd_non_square_size():
    model = create_model("fat_b0").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 97, 131))
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()


def test_forward_single_channel_input():
    model = create_model("fat_b0", in_chans=1, num_classes=7).eval()
    assert model.stem.layers[0].in_channels == 1
    with torch.no_grad():
        out = model(torch.randn(2, 1, 97, 131))
    assert out.shape == (2, 7)
    with pytest.raises(RuntimeError):
        model(torch.randn(2, 3, 64, 64))


def test_analytic_equals_fvcore_at_odd_non_square_size():
    cfg = get_config("fat_b0")
    analytic = analytic_cost(cfg, (97, 131))
    measured = fvcore_cost(FAT(cfg), cfg.in_chans, (97, 131))
    assert (analytic.height, analytic.width) == (97, 131)
    assert analytic.params == measured.params
    assert analytic.flops_by_operator == measured.flops_by_operator
    assert analytic.flops == measured.flops
    # Not the square figures: the odd size really changed the count.
    assert analytic.flops != analytic_cost(cfg, 97).flops != analytic_cost(cfg, 131).flops


# ---------------------------------------------------------------- training

def test_a_few_adamw_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = FAT(FATConfig(num_classes=4, **TINY)).train()
    x = torch.randn(16, 3, 32, 32)
    y = torch.randint(0, 4, (16,))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    first, last = losses[0], sum(losses[-3:]) / 3
    assert all(torch.isfinite(torch.tensor(losses)))
    assert last < 0.7 * first, losses


# ---------------------------------------------------------------- stochastic depth

@pytest.mark.parametrize("name", list(PUBLISHED))
def test_plan_drop_path_rises_linearly(name):
    cfg = get_config(name)
    rates = [b.drop_path for b in plan(cfg)]
    n = cfg.num_blocks
    assert len(rates) == n
    assert rates[0] == 0.0
    assert rates[-1] == pytest.approx(cfg.drop_path_rate)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert steps == pytest.approx([cfg.drop_path_rate / (n - 1)] * (n - 1))


def test_model_drop_path_modules_carry_plan_rates_in_block_order():
    cfg = FATConfig(widths=[8, 16, 16, 24], depths=[2, 1, 3, 2], heads=2, windows=1,
                    drop_path_rate=0.3)
    model = FAT(cfg)
    blocks = [blk for stage in model.stages for blk in stage]
    assert len(blocks) == cfg.num_blocks
    assert [blk.drop_path.rate for blk in blocks] == [p.drop_path for p in plan(cfg)]
    rates = [m.rate for m in model.modules() if isinstance(m, DropPath)]
    assert rates == [p.drop_path for p in plan(cfg)]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.3)
    assert rates == sorted(rates) and len(set(rates)) == len(rates)


def test_drop_path_is_identity_in_eval_and_drops_samples_in_training():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(64, 3, 2, 2)
    assert torch.equal(dp.eval()(x), x)
    out = dp.train()(x)
    per_sample = out.flatten(1)
    kept = (per_sample == 2.0).all(1)
    dropped = (per_sample == 0.0).all(1)
    assert (kept | dropped).all() and kept.any() and dropped.any()


# ---------------------------------------------------------------- create_model and the registry

def test_unknown_model_name_lists_the_family():
    with pytest.raises(UnknownModelError) as info:
        create_model("fat_b9")
    message = str(info.value)
    assert "fat_b9" in message
    for name in ("fat_b0", "fat_b1", "fat_b2", "fat_b3"):
        assert name in message


def test_overrides_win():
    model = create_model("fat_b0", num_classes=10, drop_path_rate=0.0)
    assert model.head.fc.out_features == 10
    assert model.cfg.num_classes == 10
    assert model.cfg.widths == (32, 80, 160, 256)
    assert all(m.rate == 0.0 for m in model.modules() if isinstance(m, DropPath))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_unknown_override_key_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown config key.*'num_clases'"):
        create_model("fat_b0", num_clases=10)


def test_invalid_override_value_is_an_error():
    with pytest.raises(ConfigError, match=r"heads\[0\]"):
        create_model("fat_b0", heads=[3, 5, 10, 16])


def test_create_model_from_yaml_path(tmp_path):
    cfg = FATConfig(num_classes=5, **TINY)
    path = tmp_path / "tiny.yaml"
    path.write_text(cfg.to_yaml())
    for spec in (path, str(path)):
        model = create_model(spec)
        assert model.cfg == cfg
    model = create_model(path, num_classes=3)
    assert model.head.fc.out_features == 3
    assert sum(p.numel() for p in model.parameters()) == analytic_cost(model.cfg, 32).params


def test_create_model_from_config_object():
    cfg = FATConfig(**TINY)
    assert create_model(cfg).cfg == cfg


def test_yaml_with_top_level_config_key(tmp_path):
    cfg = FATConfig(**TINY)
    path = tmp_path / "wrapped.yaml"
    path.write_text("config:\n" + "".join(f"  {line}\n" for line in cfg.to_yaml().splitlines()))
    assert FATConfig.from_yaml(path) == cfg


def test_missing_yaml_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        create_model(tmp_path / "nowhere.yaml")


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_config_round_trips_through_dict_and_yaml(name, tmp_path):
    cfg = get_config(name)
    assert FATConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / f"{name}.yaml"
    path.write_text(cfg.to_yaml())
    back = FATConfig.from_yaml(path)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_custom_config_round_trips_with_float_ratios(tmp_path):
    cfg = FATConfig(widths=[6, 12, 18, 24], depths=[1, 2, 3, 1], heads=[1, 2, 3, 4],
                    kernels=[1, 3, 5, 7], windows=[16, 8, 2, 1], ffn_ratios=[0.5, 2.5, 3, 1],
                    ffn_kernels=[1, 3, 5, 3], in_chans=2, num_classes=13, drop_path_rate=0.25)
    assert FATConfig.from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert FATConfig.from_yaml(path) == cfg


def test_exported_variants_are_listed_and_built(tmp_path, monkeypatch):
    cfg = FATConfig(num_classes=6, **TINY)
    (tmp_path / "my_net.yaml").write_text(cfg.to_yaml())
    monkeypatch.setenv("FATNAS_VARIANTS_DIR", str(tmp_path))
    names = list_models()
    assert names[:4] == ["fat_b0", "fat_b1", "fat_b2", "fat_b3"]
    assert "my_net" in names
    assert get_config("my_net") == cfg
    model = create_model("my_net")
    assert model.cfg == cfg
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 40, 40)).shape == (1, 6)
    monkeypatch.setenv("FATNAS_VARIANTS_DIR", str(tmp_path / "empty"))
    assert "my_net" not in list_models()
    with pytest.raises(UnknownModelError, match="my_net"):
        create_model("my_net")


# ---------------------------------------------------------------- every variant, timm style

# The registry as the user sees it (tests/conftest.py points FATNAS_VARIANTS_DIR at an empty
# temporary folder during each test, so remember the real one at collection).
REAL_VARIANTS_DIR = variants_dir()


@pytest.mark.parametrize("name", list_models())
def test_every_variant_forward_backward(name, monkeypatch):
    monkeypatch.setenv("FATNAS_VARIANTS_DIR", str(REAL_VARIANTS_DIR))
    torch.manual_seed(0)
    model = create_model(name, num_classes=11).train()
    x = torch.randn(2, model.cfg.in_chans, 64, 64)
    out = model(x)
    assert out.shape == (2, 11)
    assert torch.isfinite(out).all()
    out.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------- timm's model interface (backbone use)

@pytest.fixture(params=["fat_b0", "exported"])
def timm_name(request) -> str:
    """fat_b0, or a small exported variant (written by export_config into the test's variants folder)."""
    if request.param == "fat_b0":
        return "fat_b0"
    from fatnas.runs.export import export_config

    export_config(FATConfig.from_dict(TINY), "timm_tiny", dict(origin="test"))
    return "timm_tiny"


def _timm_model(name: str, **kwargs):
    from fatnas.runs.export import register_timm_models

    timm = pytest.importorskip("timm")
    register_timm_models()
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs)


def test_timm_forward_backward_every_parameter_gets_a_gradient(timm_name):
    model = _timm_model(timm_name, num_classes=7).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_timm_features_only_maps_match_feature_info(timm_name):
    model = _timm_model(timm_name, features_only=True).eval()
    info = model.feature_info
    assert info.reduction() == [4, 8, 16, 32]
    res = 224 if timm_name == "fat_b0" else 128
    with torch.no_grad():
        maps = model(torch.randn(1, 3, res, res))
    assert [m.shape[1] for m in maps] == info.channels() == list(get_config(timm_name).widths)
    assert [m.shape[-1] for m in maps] == [res // r for r in info.reduction()]
    picked = _timm_model(timm_name, features_only=True, out_indices=(1, 3)).eval()
    with torch.no_grad():
        two = picked(torch.randn(1, 3, res, res))
    assert picked.feature_info.reduction() == [8, 32] and [m.shape[1] for m in two] == picked.feature_info.channels()


def test_timm_classifier_reset_head_and_pretrained_cfg(timm_name):
    model = _timm_model(timm_name).eval()
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and len(cfg["mean"]) == len(cfg["std"]) == 3 and 0 < cfg["crop_pct"] <= 1
    state = model.state_dict()
    assert f"{cfg['first_conv']}.weight" in state and f"{cfg['classifier']}.weight" in state
    assert model.get_classifier() is model.head.fc
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape[1] == model.num_features
        assert torch.equal(model.forward_head(features), model(x))
        pooled = model.forward_head(features, pre_logits=True)
        model.reset_classifier(5)
        assert model(x).shape == (2, 5) and model.num_classes == 5
        model.reset_classifier(0)
        assert torch.equal(model(x), pooled)


def test_forward_intermediates_agree_with_forward_features():
    model = create_model(FATConfig.from_dict(TINY)).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert torch.equal(maps[-1], final) and len(maps) == 4
        assert [m.shape[-1] for m in model.forward_intermediates(x, indices=2, intermediates_only=True)] == [6, 3]
    with pytest.raises(ValueError, match="stage indices"):
        model.forward_intermediates(x, indices=[4])


def test_timm_interface_leaves_params_and_flops_unchanged():
    for name in PUBLISHED:
        model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) == analytic_cost(get_config(name)).params


@pytest.mark.parametrize("order", ["fatnas first", "timm first"])
def test_importing_fatnas_makes_the_variants_timm_models_without_importing_timm(order):
    import subprocess
    import sys

    pytest.importorskip("timm")
    first, second = ("fatnas", "timm") if order == "fatnas first" else ("timm", "fatnas")
    code = (f"import sys; import {first}; "
            "assert order != 'fatnas first' or 'timm' not in sys.modules, 'import fatnas imported timm'; "
            f"import {second}; "
            "print(type(timm.create_model('fat_b0', num_classes=3)).__name__)")
    out = subprocess.run([sys.executable, "-c", f"order = {order!r}; {code}"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "FAT", out.stderr
