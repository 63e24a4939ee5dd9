"""Search spaces: validation on load, sampling valid configs."""
from __future__ import annotations

import random

import pytest
import yaml

from fatnas.model.config import FATConfig
from fatnas.model.space import SpaceError, grid, load_space, nearest_divisor, space_from_dict
from fatnas.model.variants import get_config

from .conftest import TINY_SPACE

BASE = dict(depths=[1, 2], widths=[[32, 48], [64], [128], [256]], head_dims=[16, 32], kernels=[3, 5],
            windows=[[8, 4], [4], [2], [1]], ffn_ratios=[2, 4], ffn_kernels=[3, 5])


@pytest.mark.parametrize("name", ["fat", "fat_mobile", "fat_wide"])
def test_shipped_spaces_load_and_sample_valid_configs(name):
    space = load_space(name)
    rng = random.Random(0)
    for _ in range(200):
        cfg = space.sample(lambda _, choices: rng.choice(choices))
        assert isinstance(cfg, FATConfig)
        assert all(w % h == 0 for w, h in zip(cfg.widths, cfg.heads))


def test_every_point_of_a_small_space_is_valid():
    configs = grid(load_space(TINY_SPACE))
    assert len(configs) == load_space(TINY_SPACE).size() == 2 * 2 * 2 * 2**4


def test_one_list_means_all_stages_and_four_lists_mean_per_stage():
    space = space_from_dict(BASE)
    assert space.choices["depths"] == ((1, 2),) * 4
    assert space.choices["widths"][0] == (32, 48)


def test_heads_snap_to_a_divisor_of_the_width():
    assert nearest_divisor(48, 48 / 32) == 1  # 1.5 -> 1 (tie goes to the smaller)
    assert nearest_divisor(80, 80 / 16) == 5
    space = space_from_dict(BASE)
    cfg = space.to_config(dict(depths=[1] * 4, widths=[48, 64, 128, 256], head_dims=[32] * 4,
                               kernels=[3] * 4, windows=[8, 4, 2, 1], ffn_ratios=[2] * 4, ffn_kernels=[3] * 4))
    assert cfg.heads == (1, 2, 4, 8)


@pytest.mark.parametrize("change, message", [
    (dict(colour=[1]), r"unknown key\(s\) \['colour'\]"),
    (dict(kernels=[]), r"kernels: expected a non-empty list"),
    (dict(widths=[[32], [], [128], [256]]), r"widths\[1\]: empty choices"),
    (dict(widths=[[32], [64], [128]]), r"widths: expected 4 per-stage lists, got 3"),
    (dict(kernels=[3, 4]), r"kernels\[0\] choice 4 can never form a valid config .*odd"),
    (dict(windows=[[8, 3], [4], [2], [1]]), r"windows\[0\] choice 3 can never form a valid config .*power of two"),
    (dict(depths=[0, 1]), r"depths\[0\] = 0: must be an integer from 1 to 64"),
    (dict(head_dims=[0]), r"head_dims\[0\] = 0: must be an integer from 1"),
    (dict(heads=[2]), r"either `heads` or `head_dims`"),
    (dict(kernels=[3, [5]]), r"mix of lists and values"),
    (dict(resolution=0), r"resolution = 0"),
])
def test_invalid_spaces_are_rejected_with_a_clear_message(change, message):
    with pytest.raises(SpaceError, match=message):
        space_from_dict({**BASE, **change})


def test_missing_required_key_and_unknown_space_name(tmp_path):
    with pytest.raises(SpaceError, match=r"missing key\(s\) \['widths'\]"):
        space_from_dict({k: v for k, v in BASE.items() if k != "widths"})
    with pytest.raises(SpaceError, match="not found; give a YAML path or one of: .*fat"):
        load_space("no_such_space")
    bad = tmp_path / "bad.yaml"
    bad.write_text("widths: [1, 2\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(bad)


def test_space_round_trips_through_its_dict(tmp_path):
    space = load_space("fat")
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(space.to_dict()))
    again = load_space(path)
    assert again.choices == space.choices and again.resolution == space.resolution


@pytest.mark.parametrize("rate", [0.0, 0.2])
def test_published_networks_train_with_the_space_drop_path_not_their_imagenet_one(rate):
    space = space_from_dict({**load_space("fat").to_dict(), "drop_path_rate": rate})
    cfg = space.published("fat_b2")
    assert cfg.drop_path_rate == rate
    assert cfg.replace(drop_path_rate=0.1) == get_config("fat_b2")  # nothing else changed
