"""The documentation is checked: every Python example in docs/ runs (its printed output checked against the `#>`
lines under it), every shell example marked runnable runs (slow tier), every other documented command parses, the
command-line reference covers every command and flag, README stays short with links that resolve, and the site
builds with --strict (slow tier)."""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from fatnas.cli import build_parser
from fatnas.errors import FatnasError

from .conftest import ROOT, needs_fashion_mnist

DOCS = ROOT / "docs"


def load_hook():
    """The docs' hook module (docs/hooks/cli_reference.py), which renders the command-line page."""
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOK = load_hook()
commands, markdown_reference = HOOK.commands, HOOK.markdown_reference
README = ROOT / "README.md"
README_MAX_LINES = 150
# a shell block the suite runs: the line `<!-- runnable -->` right above a ```sh fence
RUNNABLE = re.compile(r"^<!-- runnable -->\n```sh\n(.*?)^```", re.M | re.S)
PYTHON_EXAMPLES = list(find_examples(DOCS))


def runnable_blocks() -> list[tuple[str, str]]:
    """(page:line, commands) of every shell block marked runnable in docs/."""
    blocks = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for match in RUNNABLE.finditer(text):
            line = text[:match.start()].count("\n") + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


SHELL_BLOCKS = runnable_blocks()
SHELL_FENCE = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)
# the placeholders the pages write in commands, and a value of the form each flag takes
PLACEHOLDERS = {"<id>": "run1", "<id2>": "run2", "N": "3", "ID": "sn", "RUN": "run1", "DIR": "data"}


def cli_commands() -> list[tuple[str, list[str]]]:
    """(page, arguments) of every `cli.py` command in a shell block of docs/ or README, runnable or not."""
    found = []
    for page in sorted(DOCS.rglob("*.md")) + [README]:
        for block in SHELL_FENCE.findall(page.read_text()):
            for part in (part for line in block.splitlines() for part in line.split("&&")):
                words = shlex.split(part, comments=True)
                if words[1:2] == ["cli.py"]:
                    found.append((str(page.relative_to(ROOT)), [PLACEHOLDERS.get(w, w) for w in words[2:]]))
    return found


def test_docs_have_examples_of_both_kinds():
    """Guards the two parametrized tests below against running nothing (a changed marker, a moved folder)."""
    assert len(PYTHON_EXAMPLES) >= 8, [str(e) for e in PYTHON_EXAMPLES]
    assert len(SHELL_BLOCKS) >= 2, SHELL_BLOCKS


@needs_fashion_mnist
@pytest.mark.parametrize("example", PYTHON_EXAMPLES, ids=str)
def test_python_example(example: CodeExample, eval_example: EvalExample, monkeypatch: pytest.MonkeyPatch):
    """Run in the checkout (paths such as bench/results/... are the reader's), runs and variants in a temp folder."""
    monkeypatch.chdir(ROOT)
    eval_example.run_print_check(example)


@needs_fashion_mnist
@pytest.mark.parametrize("where, commands", SHELL_BLOCKS, ids=[where for where, _ in SHELL_BLOCKS])
def test_runnable_shell_block(where: str, commands: str, tmp_path: Path):
    """`.venv/bin/python` is this interpreter; `cli.py` the checkout's; every command must exit 0."""
    script = commands.replace(".venv/bin/python cli.py", f"{sys.executable} {ROOT / 'cli.py'}")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ), cwd=tmp_path)
    assert done.returncode == 0, f"{where}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def test_every_documented_command_parses():
    """The commands too long to run (searches of hours, clusters, servers) still name real commands and flags."""
    commands_found = cli_commands()
    assert len(commands_found) >= 50
    for page, args in commands_found:
        try:
            build_parser().parse_args(args)
        except FatnasError as error:  # a renamed flag or command
            pytest.fail(f"{page}: cli.py {' '.join(args)}: {error}")


def test_cli_reference_names_every_command_and_flag():
    text = markdown_reference()
    parser = build_parser()
    names = [name for name, _, _ in commands(parser)]
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert [name.split(maxsplit=1)[1] for name in names] == list(top.choices)
    assert "(one of: `train`)" in _section(text, "fatnas supernet")  # its action is a positional with choices
    for name, _, command in commands(parser):
        section = _section(text, name)
        for action in command._actions:
            for option in set(action.option_strings) - {"-h", "--help"}:
                assert f"`{option}" in section, (name, option)


def _section(text: str, name: str) -> str:
    """The part of the reference page under the heading of command `name`, up to the next heading."""
    return text.split(f"\n## `{name}`\n")[1].split("\n## ")[0]


def test_cli_reference_escapes_table_text():
    """A pipe or a tag in a help text must not break the table or vanish as HTML."""
    parser = build_parser()
    search = next(command for name, _, command in commands(parser) if name == "fatnas search")
    search.add_argument("--odd", help="a|b <id> *x*")
    row = next(line for line in markdown_reference(parser).splitlines() if line.startswith("| `--odd"))
    assert row == "| `--odd ODD` |  | a\\|b &lt;id> \\*x\\* |"


def test_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local and all((ROOT / t).exists() for t in local), [t for t in local if not (ROOT / t).exists()]


def test_readme_screenshot_is_small():
    image = ROOT / "docs" / "images" / "dashboard.png"
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size < 200_000


def test_docs_build_strict_and_a_broken_link_fails(tmp_path: Path):
    """The site builds with --strict as `make docs` runs it; the same site with one broken link does not (so no
    option such as --quiet, under which mkdocs never counts a warning, has crept into the build)."""
    build = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    good = subprocess.run([*build, "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert good.returncode == 0, good.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").exists()
    copy = tmp_path / "copy"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy)
    (copy / "fatnas").symlink_to(ROOT / "fatnas")
    page = copy / "docs" / "guides" / "search.md"
    page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    broken = subprocess.run([*build, "-f", str(copy / "mkdocs.yml"), "-d", str(tmp_path / "site2")],
                            capture_output=True, text=True, timeout=300, env=env, cwd=copy)
    assert broken.returncode != 0 and "no-such-page.md" in broken.stderr
