"""Cost model: analytic counts against fvcore on random configs, budgets, latency and memory."""
from __future__ import annotations

import random

import pytest
import torch

from fatnas.errors import FatnasError
from fatnas.estimate.cost import (
    BUDGET_FORMS,
    Budget,
    BudgetError,
    analytic_cost,
    flops,
    fvcore_cost,
    params,
    parse_budget,
)
from fatnas.estimate.latency import LatencyStats, measure_latency, peak_memory_bytes
from fatnas.model.config import FATConfig
from fatnas.model.network import FAT
from fatnas.model.variants import get_config
from tests.reference import REFERENCE

# ---------------------------------------------------------------- property test: analytic == fvcore

SEED = 20231
N_CASES = 120
MAX_WIDTH = 48


def _draw_width(rng: random.Random, heads: int, *, even: bool) -> int:
    choices = [c for c in range(heads, MAX_WIDTH + 1, heads) if c >= 2 and (not even or c % 2 == 0)]
    return rng.choice(choices)


def _draw_case(rng: random.Random) -> tuple[FATConfig, tuple[int, int]]:
    heads = [rng.randint(1, 4) for _ in range(4)]
    widths = [_draw_width(rng, h, even=(s == 0)) for s, h in enumerate(heads)]
    cfg = FATConfig(
        widths=widths,
        depths=[rng.randint(1, 3) for _ in range(4)],
        heads=heads,
        kernels=[rng.choice([1, 3, 5, 7]) for _ in range(4)],
        windows=[rng.choice([1, 2, 4, 8, 16]) for _ in range(4)],
        ffn_ratios=[rng.choice([0.5, 1, 2, 2.5, 3, 4]) for _ in range(4)],
        ffn_kernels=[rng.choice([1, 3, 5]) for _ in range(4)],
        in_chans=rng.randint(1, 4),
        num_classes=rng.randint(1, 20),
        drop_path_rate=rng.choice([0.0, 0.1, 0.3]),
    )
    height = rng.randint(16, 96)
    width = height if rng.random() < 0.25 else rng.randint(16, 96)
    return cfg, (height, width)


def _draw_cases(n: int, seed: int) -> list[tuple[FATConfig, tuple[int, int]]]:
    rng = random.Random(seed)
    return [_draw_case(rng) for _ in range(n)]


CASES = _draw_cases(N_CASES, SEED)


def test_random_sample_is_diverse():
    """Guards the property test: the seeded draw really covers the corners it claims to."""
    sizes = [size for _, size in CASES]
    cfgs = [cfg for cfg, _ in CASES]
    assert len(CASES) >= 100
    assert sum(h != w for h, w in sizes) >= 50
    assert any(h == w for h, w in sizes)
    assert any(h % 2 and w % 2 for h, w in sizes)
    assert any(h % 4 and w % 8 for h, w in sizes)
    assert min(min(s) for s in sizes) <= 20 and max(max(s) for s in sizes) >= 90
    for field, values in [("windows", {1, 2, 4, 8, 16}), ("kernels", {1, 3, 5, 7}), ("ffn_kernels", {1, 3, 5}),
                          ("heads", {1, 2, 3, 4}), ("depths", {1, 2, 3}),
                          ("ffn_ratios", {0.5, 1, 2, 2.5, 3, 4})]:
        assert {v for cfg in cfgs for v in getattr(cfg, field)} == values, field
    assert {cfg.in_chans for cfg in cfgs} == {1, 2, 3, 4}
    assert max(max(cfg.widths) for cfg in cfgs) <= MAX_WIDTH
    assert all(cfg.widths[0] % 2 == 0 for cfg in cfgs)
    # Odd widths exist beyond the first stage, and odd FFN hidden widths (int(C * r) truncation).
    assert any(c % 2 for cfg in cfgs for c in cfg.widths[1:])
    assert any((c * r) % 1 for cfg in cfgs for c, r in zip(cfg.widths, cfg.ffn_ratios))


@pytest.mark.parametrize("case", range(N_CASES), ids=lambda i: f"cfg{i}")
def test_analytic_cost_equals_fvcore_on_random_configs(case):
    cfg, (height, width) = CASES[case]
    model = FAT(cfg)
    model_params = sum(p.numel() for p in model.parameters())
    measured = fvcore_cost(model, cfg.in_chans, (height, width))
    analytic = analytic_cost(cfg, (height, width))
    context = f"{cfg} at {height}x{width}"
    assert analytic.params == model_params == measured.params == params(cfg), context
    # Full dict equality: same per-operator figures and no operator fvcore saw that we did not.
    assert analytic.flops_by_operator == measured.flops_by_operator, context
    assert analytic.flops == measured.flops == flops(cfg, (height, width)), context
    assert (analytic.height, analytic.width) == (measured.height, measured.width) == (height, width)
    # fvcore_cost restores the training mode it found.
    assert model.training


def test_analytic_cost_accepts_int_and_pair():
    cfg = get_config("fat_b0")
    assert analytic_cost(cfg, 64) == analytic_cost(cfg, (64, 64))
    assert analytic_cost(cfg).flops == REFERENCE[0][3]
    assert analytic_cost(cfg, (64, 96)).flops == analytic_cost(cfg, (96, 64)).flops != analytic_cost(cfg, 64).flops


# ---------------------------------------------------------------- budget parser

@pytest.mark.parametrize("text, field, value", [
    ("2GFLOPs", "max_flops", 2_000_000_000),
    ("500MFLOPs", "max_flops", 500_000_000),
    ("1.5e9FLOPs", "max_flops", 1_500_000_000),
    ("0.75GFLOPs", "max_flops", 750_000_000),
    ("2 GFLOPs", "max_flops", 2_000_000_000),
    ("2Gflops", "max_flops", 2_000_000_000),
    ("1TFLOP", "max_flops", 1_000_000_000_000),
    ("5Mparams", "max_params", 5_000_000),
    ("800Kparams", "max_params", 800_000),
    ("800kparams", "max_params", 800_000),
    ("1.5e6params", "max_params", 1_500_000),
    ("20ms", "max_latency_ms", 20.0),
    ("0.05s", "max_latency_ms", 50.0),
    (" 12.5 ms ", "max_latency_ms", 12.5),
])
def test_parse_budget_good_inputs(text, field, value):
    budget = parse_budget(text)
    assert getattr(budget, field) == value
    assert isinstance(getattr(budget, field), int if field != "max_latency_ms" else float)
    others = {"max_flops", "max_params", "max_latency_ms"} - {field}
    assert all(getattr(budget, f) is None for f in others)
    assert budget.res == 224


def test_parse_budget_combination():
    budget = parse_budget(["2GFLOPs", "5Mparams", "20ms"], res=160)
    assert budget == Budget(max_flops=2_000_000_000, max_params=5_000_000, max_latency_ms=20.0, res=160)
    assert parse_budget(("500MFLOPs", "20ms")) == Budget(max_flops=500_000_000, max_latency_ms=20.0)
    assert parse_budget([]) == Budget()


def test_budget_describe_states_the_flop_convention():
    text = parse_budget(["2GFLOPs", "5Mparams"]).describe()
    assert "2.000 GFLOPs" in text and "fvcore total" in text and "224x224" in text and "5.00M" in text
    assert Budget().describe() == "no budget"


@pytest.mark.parametrize("text", [
    "2GB", "two GFLOPs", "-1GFLOPs", "0FLOPs", "0.0ms", "", "   ", "2G", "2GFLOPs extra", "GFLOPs",
    "2XFLOPs", "5 M params", "2GFLOPs,5Mparams", "1e9", "20 min", "2..5GFLOPs", "nanFLOPs", "infFLOPs",
])
def test_parse_budget_bad_inputs(text):
    with pytest.raises(BudgetError) as info:
        parse_budget(text)
    message = str(info.value)
    assert repr(text) in message
    assert BUDGET_FORMS in message
    for form in ("2GFLOPs", "5Mparams", "20ms"):
        assert form in message


def test_parse_budget_kind_given_twice():
    with pytest.raises(BudgetError, match=r"'5Mparams'.*params limit was already given; give each kind once"):
        parse_budget(["5Mparams", "2GFLOPs", "5Mparams"])
    with pytest.raises(BudgetError, match="already given"):
        parse_budget(["2GFLOPs", "500MFLOPs"])
    with pytest.raises(BudgetError, match="already given"):
        parse_budget(["20ms", "0.1s"])


@pytest.mark.parametrize("text, expected", [("2gflops", 2_000_000_000), ("5mparams", 5_000_000),
                                            ("1tflops", 1_000_000_000_000)])
def test_parse_budget_lowercase_prefix_means_the_same_unit(text, expected):
    budget = parse_budget(text)
    assert (budget.max_flops or budget.max_params) == expected


def test_parse_budget_rounding_to_zero_is_rejected():
    with pytest.raises(BudgetError, match="rounds to zero; accepted forms"):
        parse_budget("0.0001FLOPs")


def test_budget_fits_fat_b2_versus_2gflops():
    budget = parse_budget("2GFLOPs")
    b2 = analytic_cost(get_config("fat_b2"))
    b1 = analytic_cost(get_config("fat_b1"))
    assert b2.flops == 2_150_371_712  # fvcore total (the paper's 2.0G counts convolutions only)
    assert not budget.fits(b2)
    assert budget.violations(b2) == ["FLOPs 2.150 GFLOPs > 2.000 GFLOPs"]
    assert budget.fits(b1)
    assert budget.violations(b1) == []


def test_budget_violations_params_and_latency():
    budget = parse_budget(["2GFLOPs", "10Mparams", "40ms"])
    b2 = analytic_cost(get_config("fat_b2"))
    b1 = analytic_cost(get_config("fat_b1"))
    assert budget.violations(b2, latency_ms=54.0) == [
        "FLOPs 2.150 GFLOPs > 2.000 GFLOPs", "params 13466728 > 10000000", "latency 54.00 ms > 40 ms"]
    assert budget.fits(b1, latency_ms=38.0)
    assert not budget.fits(b1, latency_ms=40.5)
    assert budget.fits(b1)  # latency unknown: only the known limits are checked
    assert Budget().fits(analytic_cost(get_config("fat_b3")), latency_ms=1e6)


def test_budget_limit_is_inclusive():
    b1 = analytic_cost(get_config("fat_b1"))
    assert Budget(max_flops=b1.flops, max_params=b1.params).fits(b1)
    assert not Budget(max_flops=b1.flops - 1).fits(b1)
    assert not Budget(max_params=b1.params - 1).fits(b1)


# ---------------------------------------------------------------- latency and memory

TINY = FATConfig(widths=[8, 16, 16, 24], depths=1, heads=2, kernels=3, windows=[4, 2, 1, 1],
                 ffn_ratios=2.0, ffn_kernels=3, num_classes=5)


def test_measure_latency_returns_sane_stats():
    threads = torch.get_num_threads()
    try:
        stats = measure_latency(FAT(TINY), res=32, warmup=2, repeats=7, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert isinstance(stats, LatencyStats)
    assert stats.repeats == 7 and len(stats.samples_ms) == 7
    assert all(t > 0 for t in stats.samples_ms)
    assert min(stats.samples_ms) <= stats.p10_ms <= stats.median_ms <= stats.p90_ms <= max(stats.samples_ms)
    assert min(stats.samples_ms) <= stats.mean_ms <= max(stats.samples_ms)
    assert stats.cv >= 0
    assert (stats.device, stats.batch_size, stats.res, stats.threads) == ("cpu", 1, 32, 1)
    d = stats.to_dict()
    assert "samples_ms" not in d and d["repeats"] == 7


def test_peak_memory_on_cpu_exceeds_parameter_bytes():
    model = FAT(TINY)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    peak, how = peak_memory_bytes(model, res=64)
    assert isinstance(peak, int)
    assert peak > param_bytes > 0
    assert "estimate" in how
    # A larger input needs more activation memory; the weights stay the same.
    bigger, _ = peak_memory_bytes(model, res=128)
    assert bigger > peak


def test_reference_clock_prices_in_ms_as_ratio_times_the_runs_reference_median():
    import statistics

    from fatnas.estimate.latency import ReferenceClock

    clock = ReferenceClock(FAT(TINY), res=32, threads=1, warmup=1, repeats=5)
    first = clock.measure(FAT(TINY.replace(widths=[16, 16, 32, 32])))
    second = clock.measure(FAT(TINY))
    assert len(clock.reference_samples) == 10 and first.reference.repeats == first.candidate.repeats == 5
    ratios = [c / r for c, r in zip(second.candidate.samples_ms, second.reference.samples_ms)]
    assert second.ratio == pytest.approx(statistics.median(ratios)) and second.ratio_cv >= 0
    assert second.reference_ms == pytest.approx(statistics.median(clock.reference_samples))
    assert second.latency_ms == pytest.approx(second.ratio * second.reference_ms)
    assert second.to_dict()["latency_ms"] == second.latency_ms and second.candidate.threads == 1


def test_onnxruntime_is_a_latency_runtime():
    pytest.importorskip("onnxruntime")
    stats = measure_latency(FAT(TINY), res=32, warmup=1, repeats=3, threads=1, runtime="onnxruntime")
    assert stats.repeats == 3 and all(t > 0 for t in stats.samples_ms)
    with pytest.raises(FatnasError, match="unknown latency runtime 'tvm'"):
        measure_latency(FAT(TINY), res=32, runtime="tvm")


def test_cli_cost_measures_latency_under_onnx_runtime(capsys):
    pytest.importorskip("onnxruntime")
    import json

    from fatnas.cli import main

    assert main(["cost", "fat_b0", "--latency", "--runtime", "onnxruntime", "--res", "32", "--warmup", "1",
                 "--repeats", "2", "--threads", "1", "--json"]) == 0
    latency = json.loads(capsys.readouterr().out)["latency"]
    assert latency["runtime"] == "onnxruntime" and latency["repeats"] == 2 and latency["median_ms"] > 0
