"""FATConfig validation: one test per rule, each checking the message names field, value and rule."""
from __future__ import annotations

import re

import pytest

from fatnas.model.config import ConfigError, FATConfig

BASE = dict(widths=[32, 80, 160, 256], depths=[2, 2, 6, 2], heads=[2, 5, 10, 16])


def make(**changes) -> FATConfig:
    return FATConfig(**{**BASE, **changes})


def test_base_config_is_valid():
    cfg = make()
    assert cfg.widths == (32, 80, 160, 256)
    assert cfg.num_blocks == 12


def test_width_not_divisible_by_heads():
    with pytest.raises(ConfigError, match=re.escape("heads[2] = 7: width 160 must be divisible by heads 7")):
        make(heads=[2, 5, 7, 16])


def test_heads_zero():
    with pytest.raises(ConfigError, match=re.escape("heads[0] = 0: heads must be an integer from 1 to 4096")):
        make(heads=[0, 5, 10, 16])


def test_even_kernel():
    with pytest.raises(ConfigError, match=re.escape("kernels[1] = 4: kernel must be an odd integer from 1 to 63")):
        make(kernels=[3, 4, 7, 9])


def test_kernel_zero():
    with pytest.raises(ConfigError, match=re.escape("kernels[0] = 0: kernel must be an odd integer from 1 to 63")):
        make(kernels=[0, 5, 7, 9])


def test_ffn_kernel_even():
    with pytest.raises(ConfigError, match=re.escape("ffn_kernels[3] = 2: kernel must be an odd integer from 1 to 63")):
        make(ffn_kernels=[5, 5, 5, 2])


def test_window_not_power_of_two():
    with pytest.raises(ConfigError, match=re.escape("windows[1] = 3: global downsampling rate must be a power of two")):
        make(windows=[8, 3, 2, 1])


def test_window_zero():
    with pytest.raises(ConfigError, match=re.escape("windows[3] = 0: global downsampling rate must be a power of two")):
        make(windows=[8, 4, 2, 0])


def test_depth_zero():
    with pytest.raises(ConfigError, match=re.escape("depths[2] = 0: depth must be an integer from 1 to 64")):
        make(depths=[2, 2, 0, 2])


def test_depth_not_an_integer():
    with pytest.raises(ConfigError, match=re.escape("depths[0] = 1.5: depth must be an integer from 1 to 64")):
        make(depths=[1.5, 2, 6, 2])


@pytest.mark.parametrize("ratio", [0, -1.0])
def test_ffn_ratio_not_positive(ratio):
    with pytest.raises(ConfigError, match=re.escape(f"ffn_ratios[1] = {ratio!r}: FFN ratio must be a number > 0")):
        make(ffn_ratios=[4, ratio, 4, 4])


def test_ffn_ratio_giving_zero_hidden_width():
    message = "ffn_ratios[0] = 0.01: FFN hidden width int(32 * 0.01) must be >= 1"
    with pytest.raises(ConfigError, match=re.escape(message)):
        make(ffn_ratios=[0.01, 4, 4, 4])


@pytest.mark.parametrize("field", ["widths", "depths", "heads", "kernels", "windows", "ffn_ratios", "ffn_kernels"])
def test_not_exactly_four_stages(field):
    three = list(BASE.get(field, [3, 5, 7]))[:3]
    message = f"{field}: expected exactly 4 stages (or one value for all), got 3"
    with pytest.raises(ConfigError, match=re.escape(message)):
        make(**{field: three})


def test_five_stages_rejected():
    with pytest.raises(ConfigError, match=r"widths: expected exactly 4 stages .* got 5"):
        make(widths=[32, 80, 160, 256, 512])


def test_unknown_keys_in_from_dict():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['drop_rate', 'width'\]; accepted keys: widths, "):
        FATConfig.from_dict({**BASE, "width": 3, "drop_rate": 0.1})


def test_missing_required_keys_in_from_dict():
    with pytest.raises(ConfigError, match=re.escape("config: missing required key(s) ['depths', 'heads']")):
        FATConfig.from_dict({"widths": [32, 80, 160, 256]})


def test_from_dict_rejects_non_mapping():
    with pytest.raises(ConfigError, match="expected a mapping of fields, got list"):
        FATConfig.from_dict([32, 80, 160, 256])


def test_odd_first_width():
    with pytest.raises(ConfigError, match=re.escape("widths[0] = 33: the first width must be even")):
        make(widths=[33, 80, 160, 256], heads=[3, 5, 10, 16])


def test_width_zero():
    with pytest.raises(ConfigError, match=re.escape("widths[1] = 0: width must be an integer from 1 to 16384")):
        make(widths=[32, 0, 160, 256])


def test_num_classes_zero():
    with pytest.raises(ConfigError, match=re.escape("num_classes = 0: must be an integer >= 1")):
        make(num_classes=0)


def test_in_chans_zero():
    with pytest.raises(ConfigError, match=re.escape("in_chans = 0: must be an integer >= 1")):
        make(in_chans=0)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_drop_path_rate_out_of_range(rate):
    with pytest.raises(ConfigError, match=re.escape(f"drop_path_rate = {rate!r}: must be a number in [0, 1)")):
        make(drop_path_rate=rate)


def test_boolean_is_not_an_integer():
    with pytest.raises(ConfigError, match=re.escape("depths[0] = True: depth must be an integer from 1 to 64")):
        make(depths=[True, 2, 6, 2])


def test_replace_validates_and_rejects_unknown_fields():
    cfg = make()
    assert cfg.replace(num_classes=10).num_classes == 10
    with pytest.raises(ConfigError, match=re.escape("kernels[0] = 2")):
        cfg.replace(kernels=2)
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['colour'\]"):
        cfg.replace(colour="red")


def test_scalar_stage_value_expands_to_four_stages():
    cfg = FATConfig(widths=64, depths=1, heads=4, kernels=5, windows=2, ffn_ratios=2.5, ffn_kernels=3)
    assert cfg.widths == (64, 64, 64, 64)
    assert cfg.depths == (1, 1, 1, 1)
    assert cfg.heads == (4, 4, 4, 4)
    assert cfg.kernels == (5, 5, 5, 5)
    assert cfg.windows == (2, 2, 2, 2)
    assert cfg.ffn_ratios == (2.5, 2.5, 2.5, 2.5)
    assert cfg.ffn_kernels == (3, 3, 3, 3)
    assert cfg.num_blocks == 4
    # from_dict and to_dict agree on the expanded form.
    assert FATConfig.from_dict({"widths": 64, "depths": 1, "heads": 4}).to_dict()["widths"] == [64] * 4


def test_scalar_value_is_still_validated():
    with pytest.raises(ConfigError, match=re.escape("windows[0] = 6: global downsampling rate must be a power of two")):
        make(windows=6)


@pytest.mark.parametrize("field, value, words", [
    ("depths", [2, 2, 10**11, 2], "depths[2] = 100000000000: depth must be an integer from 1 to 64"),
    ("widths", [64, 128, 256, 2**20], "widths[3] = 1048576: width must be an integer from 1 to 16384"),
    ("windows", [8, 4, 2, 2048], "windows[3] = 2048: global downsampling rate must be a power of two from 1 to 1024"),
    ("ffn_ratios", [4, 4, 4, 1e9], "ffn_ratios[3] = 1000000000.0: FFN ratio must be a number > 0 and at most 64"),
])
def test_a_value_beyond_what_a_search_space_may_hold_is_refused(field, value, words):
    """The same ranges as a search space's choices: no config too large to build or price is taken."""
    with pytest.raises(ConfigError, match=re.escape(words)):
        make(**{field: value})
