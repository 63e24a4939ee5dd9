"""Bad input of any shape exits 2 with a single line on stderr, no traceback, within 5 s.

Hypothesis generates malformed space files (each key corrupted with values of the wrong type or range,
too many choices, broken YAML, a top level that is no mapping), budgets (no number, a number that is not
positive or finite, an unknown unit) and flag values; each goes through the CLI's `main` in this process.
Every generated input is malformed by construction, not by asking fatnas which inputs it refuses.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fatnas.cli import main

from .conftest import needs_fashion_mnist

BASE_SPACE = dict(resolution=64, depths=[1], widths=[[16, 24], [32], [32, 48], [64]], head_dims=[16], kernels=[3],
                  windows=[[2, 4], [2], [1], [1]], ffn_ratios=[1, 2], ffn_kernels=[3])
# the whole range each key accepts: (integer?, lowest, highest); anything else is malformed
ACCEPTED = {"depths": (True, 1, 64), "widths": (True, 1, 16384), "head_dims": (True, 1, 4096),
            "kernels": (True, 1, 63), "windows": (True, 1, 1024), "ffn_ratios": (False, 0, 64),
            "ffn_kernels": (True, 1, 63)}
pytestmark = pytest.mark.timeout(300)  # a refusal is quick; a hang is the runner's to stop, not a clock's
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def run_main(*args: str) -> tuple[int, str, float]:
    """(exit status, stderr, seconds) of `fatnas ARGS` in this process."""
    err, start = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, err.getvalue(), time.perf_counter() - start


def assert_one_line_exit_2(*args: str) -> None:
    status, err, seconds = run_main(*args)
    lines = err.splitlines()
    assert status == 2, (args, err)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (args, err)


def bad_choice(key: str) -> st.SearchStrategy:
    """One value outside what `key` accepts."""
    integer, low, high = ACCEPTED[key]
    wrong_type = st.one_of(st.text(max_size=8), st.booleans(), st.none(), st.just({"a": 1}))
    out_of_range = st.one_of(st.integers(max_value=low if not integer else low - 1),
                             st.integers(min_value=high + 1, max_value=10**12))
    if integer:
        non_integer = st.floats(allow_nan=True).filter(lambda v: v != v or v != int(v) if abs(v) < 1e300 else True)
        return st.one_of(wrong_type, out_of_range, non_integer)
    return st.one_of(wrong_type, out_of_range, st.floats(max_value=0.0), st.floats(min_value=high + 0.5),
                     st.sampled_from([float("nan"), float("inf")]))


@st.composite
def malformed_space(draw: st.DrawFn) -> str:
    """The text of a space file with one thing wrong."""
    how = draw(st.sampled_from(["choice", "resolution", "drop_path_rate", "too_many", "stages", "yaml", "top"]))
    space = {k: (list(map(list, v)) if isinstance(v[0], list) else list(v)) if isinstance(v, list) else v
             for k, v in BASE_SPACE.items()}
    if how == "choice":
        key = draw(st.sampled_from(sorted(ACCEPTED)))
        choices = list(space[key]) if not isinstance(space[key][0], list) else list(space[key][0])
        choices.insert(draw(st.integers(0, len(choices))), draw(bad_choice(key)))
        space[key] = choices
    elif how == "resolution":
        space["resolution"] = draw(st.one_of(st.integers(max_value=0), st.integers(min_value=16385, max_value=10**9),
                                             st.text(max_size=6), st.floats(), st.booleans()))
    elif how == "drop_path_rate":
        space["drop_path_rate"] = draw(st.one_of(st.text(max_size=6), st.floats(min_value=1.0), st.booleans(),
                                                 st.floats(max_value=-1e-9), st.just(float("nan"))))
    elif how == "too_many":
        space["widths"] = list(range(16, 16 + 16 * draw(st.integers(257, 20_000)), 16))
    elif how == "stages":
        space["widths"] = [[16]] * draw(st.sampled_from([1, 2, 3, 5, 8]))
    elif how == "yaml":
        return draw(st.sampled_from(["widths: [16, 32\n", "depths: {1: [\n", "a: b: c\n", "\t- x\n", "{{{\n"]))
    else:
        return yaml.safe_dump(draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(min_size=1,
                                                                                                          max_size=8))))
    return yaml.safe_dump(space, sort_keys=False)


@pytest.fixture(scope="module", autouse=True)
def warm_imports():
    """Import the heavy modules once, so that the 5 s bound times the checks, not torch's import."""
    run_main("search", "--budget", "nothing")
    run_main("space", "no-such-space")


@PROPERTY
@given(text=malformed_space(), command=st.sampled_from(["space", "search", "fidelity", "latency-profile"]))
def test_a_malformed_space_file_is_one_line_and_exit_2(text, command):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "space.yaml"
        path.write_text(text)
        args = {"space": ["space", str(path)], "search": ["search", "--space", str(path), "--budget", "2GFLOPs"],
                "fidelity": ["fidelity", "--space", str(path)],
                "latency-profile": ["latency-profile", "--space", str(path), "-o", str(Path(folder) / "t.json")]}
        assert_one_line_exit_2(*args[command])


UNITS = ["FLOPs", "MFLOPs", "GFLOPs", "Mparams", "Kparams", "params", "ms", "s"]


@st.composite
def malformed_budget(draw: st.DrawFn) -> str:
    how = draw(st.sampled_from(["no_number", "not_positive", "not_finite", "unit", "twice"]))
    if how == "no_number":
        return draw(st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=12))
    if how == "not_positive":
        number = draw(st.one_of(st.integers(max_value=0), st.floats(max_value=0, allow_nan=False)))
        return f"{number}{draw(st.sampled_from(UNITS))}"
    if how == "not_finite":
        return f"{draw(st.sampled_from(['inf', 'nan', '1e999', '-inf']))}{draw(st.sampled_from(UNITS))}"
    if how == "unit":
        unit = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz%#", min_size=1, max_size=6).filter(
            lambda u: u.lower() not in {x.lower() for x in UNITS} | {"flop", "param", "kflops", "kflop", "tflops",
                                                                       "tflop", "mflop", "gflop", "kparam", "mparam",
                                                                       "gparams", "gparam", "tparams", "tparam"}
            and not u.lower().endswith(("flops", "flop", "params", "param"))))
        return f"{draw(st.integers(1, 1000))}{unit}"
    return "2GFLOPs"  # given twice below


@PROPERTY
@given(budget=malformed_budget(), command=st.sampled_from(["search", "fidelity", "scale"]))
def test_a_malformed_budget_is_one_line_and_exit_2(budget, command):
    twice = ["--budget", budget] if budget != "2GFLOPs" else ["--budget", "2GFLOPs", "--budget", "3GFLOPs"]
    args = {"search": ["search", *twice], "fidelity": ["fidelity", *twice],
            "scale": ["scale", "fat_b0", "--train", "0", *twice]}[command]
    assert_one_line_exit_2(*args)


# flags that take a positive number, with one valid rest of the command line each
POSITIVE_FLAGS = {
    "--trials": ["search", "--budget", "2GFLOPs"], "--proxy-res": ["search", "--budget", "2GFLOPs"],
    "--proxy-images": ["search", "--budget", "2GFLOPs"], "--proxy-epochs": ["search", "--budget", "2GFLOPs"],
    "--batch-size": ["search", "--budget", "2GFLOPs"], "--threads": ["search", "--budget", "2GFLOPs"],
    "--workers": ["search", "--budget", "2GFLOPs"], "--heartbeat-interval": ["search", "--budget", "2GFLOPs"],
    "--archs": ["fidelity"], "--res": ["cost", "fat_b0"],
}
TEXT_FLAGS = {  # flags that take one of some words or forms, with one valid rest of the command line each
    "--sampler": ["search", "--budget", "2GFLOPs"], "--device": ["search", "--budget", "2GFLOPs"],
    "--storage": ["search", "--budget", "2GFLOPs"], "--backend": ["search", "--budget", "2GFLOPs"],
    "--dataset": ["search", "--budget", "2GFLOPs"], "--format": ["export", "--model", "fat_b0"],
    "--low": ["fidelity"], "--classes": ["search", "--budget", "2GFLOPs"],
}


@st.composite
def bad_flag(draw: st.DrawFn) -> list[str]:
    if draw(st.booleans()):
        flag = draw(st.sampled_from(sorted(POSITIVE_FLAGS)))
        value = draw(st.one_of(st.integers(max_value=0).map(str), st.text(alphabet="abcxyz.,-e", min_size=1,
                                                                            max_size=6).filter(_not_a_number),
                               st.just("1.5"), st.just("")))
        if flag == "--proxy-res" and draw(st.booleans()):
            value = str(draw(st.integers(100_000, 10**9)))  # far beyond any memory
        return [*POSITIVE_FLAGS[flag], f"{flag}={value}"]
    flag = draw(st.sampled_from(sorted(TEXT_FLAGS)))
    value = draw(st.text(alphabet="QZXqzx!%_", min_size=1, max_size=8))  # no word or form any flag accepts
    return [*TEXT_FLAGS[flag], f"{flag}={value}"]


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


@PROPERTY
@given(args=bad_flag())
def test_a_bad_flag_value_is_one_line_and_exit_2(args):
    assert_one_line_exit_2(*args)


@pytest.mark.parametrize("args, words", [
    (["search", "--budget", "-5Mparams"], "budget '-5Mparams' must be positive"),
    (["search", "--budget", "2GFLOPs", "--proxy-res", "100000"], "--proxy-res 100000: the largest network"),
    (["export", "--model", "fat_b0", "--format", "pt2", "-o", "/proc/x.pt2"], "-o /proc/x.pt2: cannot be written"),
    (["space", str(Path(__file__).parent / "data" / "tiny_space.yaml"), "--res", "0"], "resolution '0'"),
    (["search", "--budget", "2GFLOPs", "--trials", "99999999999999999999"], "expected a whole number from 1 to"),
    (["search", "--budget", "2GFLOPs", "--run-id", ""], "run id '' is malformed"),
    (["fidelity", "--resume", "study", "--task", "fmnist10"], "--task would be ignored"),
])
def test_the_issue_cases_name_what_is_wrong(args, words, isolated_dirs):
    status, err, seconds = run_main(*args)
    assert status == 2 and err.count("\n") == 1 and words in err, err
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


@pytest.mark.parametrize("change, words", [
    (dict(widths=["wide", 64]), "widths[0] = 'wide': must be an integer from 1 to 16384"),
    (dict(widths=[1_000_000_000]), "widths[0] = 1000000000: must be an integer from 1 to 16384"),
    (dict(widths=list(range(16, 16 * 20_001, 16))), "widths[0]: 20000 choices; at most 256 per stage"),
    (dict(drop_path_rate="lots"), "drop_path_rate = 'lots': must be a number in [0, 1)"),
    (dict(resolution=100_000), "resolution = 100000: must be an integer from 1 to 16384"),
    (dict(resolution=12_000), "space 'space' resolution 12000: the largest network of space 'space' needs about"),
])
def test_the_issue_space_cases_name_the_key_and_the_limit(change, words, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**BASE_SPACE, **change}))
    status, err, seconds = run_main("search", "--space", str(path), "--budget", "2GFLOPs")
    assert status == 2 and err.count("\n") == 1 and words in err, err
    assert any(limit in err for limit in ("must be an integer from", "must be a number in", "the limit is", "at most"))


@pytest.mark.parametrize("args, words", [
    (["cost", "fat_b0", "--res", "20000", "--latency"], "--res 20000: the network needs about"),
    (["supernet", "train", "--res", "9000"], "--res 9000: the largest network of space 'fat' needs about"),
    (["scale", "fat_b0", "--proxy-res", "9000"], "--proxy-res 9000: the network needs about"),
    (["scale", "fat_b0", "--resolutions", "224", "30000", "--latency", "--train", "0"],
     "--resolutions 30000: the network needs about"),
])
def test_a_resolution_that_cannot_fit_in_memory_is_refused_before_anything_is_written(args, words, tmp_path):
    status, err, seconds = run_main(*args)
    assert status == 2 and err.count("\n") == 1 and words in err and "the limit is" in err, err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("args, words", [
    (["supernet", "train", "--epochs", "nan"], "--epochs: 'nan': expected a finite number"),
    (["supernet", "train", "--checkpoint-minutes", "inf"], "--checkpoint-minutes: 'inf': expected a finite number"),
    (["supernet", "train", "--random-subnets", "-1"], "random_subnets = -1: must be from 0 to 64"),
    (["search", "--budget", "2GFLOPs", "--timeout", "nan"], "--timeout: 'nan': expected a finite number"),
    (["scale", "fat_b0", "--alpha=-inf"], "--alpha: '-inf': expected a finite number"),
    (["search", "--budget", "2GFLOPs", "--res", "64"], "unrecognized arguments: --res 64"),  # not --resume 64
])
def test_a_number_flag_that_is_no_finite_number_or_an_abbreviation_is_refused_before_anything_is_written(
        args, words, tmp_path):
    status, err, seconds = run_main(*args)
    assert status == 2 and err.count("\n") == 1 and words in err, err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("args, words", [
    (["cost", "fat_b0", "--latency", "--threads", "100000000000"],
     "--threads 100000000000: must be a positive number, at most 1,024"),
    (["cost", "fat_b0", "--latency", "--batch-size", "0"], "--batch-size: '0': expected a whole number from 1"),
    (["cost", "fat_b0", "--latency", "--repeats", "0"], "--repeats: '0': expected a whole number from 1"),
    (["search", "--budget", "2GFLOPs", "--seed=-1"], "--seed: '-1': expected a whole number from 0 to 4,294,967,295"),
    (["search", "--budget", "2GFLOPs", "--workers", "100000000000"], "--workers 100000000000: at most 1024"),
    (["search", "--budget", "2GFLOPs", "--proxy-epochs", "100000000000"], "at most 1000 passes"),
    (["supernet", "train", "--random-subnets", "100000000000"], "random_subnets = 100000000000: must be from 0 to 64"),
    (["fidelity", "--archs", "100000000000"], "--archs 100000000000: at most 10,000 architectures"),
    (["fidelity", "--archs", "3", "--workers", "100000000000"], "workers = 100000000000, threads = 1: at most 1024"),
    (["scale", "fat_b0", "--train", "0", "--depths=100000000000"], "depth must be an integer from 1 to 64"),
])
def test_a_count_too_large_to_run_or_out_of_range_is_refused_at_once(args, words, tmp_path):
    """Values like these once overflowed (threads), raised from deep inside (seed, batch, repeats, proxy epochs) or
    hung building 1e11 of something (workers, sub-networks, architectures, depth)."""
    status, err, seconds = run_main(*args)
    assert status == 2 and err.count("\n") == 1 and words in err, err
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())


@needs_fashion_mnist
def test_a_latency_budget_no_network_meets_stops_at_once_and_writes_nothing(isolated_dirs):
    tiny = str(Path(__file__).parent / "data" / "tiny_space.yaml")
    status, err, _ = run_main("search", "--budget", "0.001ms", "--space", tiny, "--trials", "1", "--quiet")
    assert status == 2 and err.count("\n") == 1 and "meets the latency budget" in err and "ms at" in err, err
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_an_output_through_a_dangling_symlink_is_refused_and_nothing_is_made(tmp_path):
    from fatnas.errors import FatnasError
    from fatnas.paths import check_writable

    link = tmp_path / "out.html"
    link.symlink_to(tmp_path / "missing" / "page.html")
    with pytest.raises(FatnasError, match="a folder that does not exist"):
        check_writable(link, "-o")
    assert not (tmp_path / "missing").exists()


def test_one_damaged_variant_file_leaves_every_other_variant_listed(isolated_dirs, capsys):
    variants = isolated_dirs / "variants"
    variants.mkdir(parents=True, exist_ok=True)
    (variants / "bomb.yaml").write_text("a: &a [x]\nb: *a\n")
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "fat_b0" in captured.out and "bomb" not in captured.out
    assert captured.err.count("\n") == 1 and "skipped variant 'bomb'" in captured.err and "alias" in captured.err
