"""The command line: models, show, cost, and one-line errors with exit status 2."""
from __future__ import annotations

import json

import pytest

from fatnas import cli

from .conftest import run_cli

BAD_BUDGETS = ["2GB", "two GFLOPs", "-1GFLOPs", "0FLOPs", "", "2G", "2GFLOPs extra", "GFLOPs", "1e999FLOPs",
               "20 minutes", "5Mparam s", "0.0001FLOPs"]


def main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("budget", BAD_BUDGETS)
def test_every_malformed_budget_exits_2_with_the_accepted_forms(capsys, isolated_dirs, budget):
    code, _, err = main(capsys, "search", f"--budget={budget}")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "accepted forms: 2GFLOPs, 500MFLOPs" in err
    assert not (isolated_dirs / "runs").exists()


def test_a_budget_given_twice_exits_2(capsys):
    code, _, err = main(capsys, "search", "--budget", "2GFLOPs", "--budget", "1GFLOPs")
    assert code == 2 and "already given" in err


def test_models_lists_the_published_family_with_the_flop_convention(capsys):
    code, out, _ = main(capsys, "models")
    assert code == 0
    assert all(name in out for name in ("fat_b0", "fat_b1", "fat_b2", "fat_b3"))
    assert "fvcore total at 224x224" in out and "2.150 GFLOPs" in out


def test_show_prints_the_stage_table_with_sizes(capsys):
    code, out, _ = main(capsys, "show", "fat_b0", "--res", "97")
    assert code == 0
    assert "25x25" in out and "13x13" in out  # stage 0 works at ceil(97/4), hands ceil(25/2) on
    assert "fvcore total at 97x97" in out


def test_cost_json_gives_the_exact_breakdown(capsys):
    code, out, _ = main(capsys, "cost", "fat_b2", "--json")
    data = json.loads(out)
    assert code == 0 and data["flops"] == 2150371712 and data["params"] == 13466728
    assert data["flops_by_operator"]["conv"] == 2037503104 and "fvcore total" in data["convention"]


def test_cost_of_a_yaml_config_with_latency(capsys, tmp_path):
    from fatnas.model.config import FATConfig

    path = tmp_path / "mine.yaml"
    path.write_text(FATConfig(widths=[16, 32, 32, 64], depths=1, heads=[1, 2, 2, 4]).to_yaml())
    code, out, _ = main(capsys, "cost", str(path), "--res", "64", "--latency", "--repeats", "3", "--warmup", "1",
                        "--json")
    data = json.loads(out)
    assert code == 0
    assert data["latency"]["p10_ms"] <= data["latency"]["median_ms"] <= data["latency"]["p90_ms"]
    assert data["peak_memory_bytes"] > 0 and "estimate" in data["memory_method"]


def test_cost_all_explains_the_paper_convention(capsys):
    code, out, _ = main(capsys, "cost", "--all")
    assert code == 0 and "counts convolutions only" in out and "2.038" in out and "2.150" in out


@pytest.mark.parametrize("argv, message", [
    (["show", "fat_b9"], "unknown model 'fat_b9'; known models: fat_b0, fat_b1, fat_b2, fat_b3"),
    (["cost", "missing.yaml"], "config file not found: missing.yaml"),
    (["show", "fat_b0", "--res", "0"], "--res 0: the resolution must be a positive integer"),
    (["cost"], "give a model name or CONFIG.yaml, or --all"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, _, err = main(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_invalid_config_file_names_the_field(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("widths: [32, 64, 128, 256]\ndepths: 1\nheads: [3, 2, 4, 8]\n")
    code, _, err = main(capsys, "show", str(path))
    assert code == 2 and "heads[0] = 3: width 32 must be divisible by heads 3" in err


def test_exit_status_2_from_a_real_process():
    out = run_cli("cost", "--budget-typo")
    assert out.returncode == 2 and out.stderr.startswith("error:")


def test_every_flag_of_every_command_has_help():
    import argparse

    from fatnas.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [f"{name} {a.option_strings[0]}" for name, sub in commands.items() for a in sub._actions
               if a.option_strings and a.dest != "help" and not a.help]
    assert missing == []
