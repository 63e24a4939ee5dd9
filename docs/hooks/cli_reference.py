"""MkDocs hook: the command-line reference page, rendered from the argparse parsers of `fatnas/cli/` at build time
(added as reference/cli.md, never written into docs/), so the page cannot drift from what the parsers accept.

argparse has no public way to list a parser's arguments, so this docs tool reads `_actions`; the package itself
uses no underscore API (tests/test_search.py checks fatnas/)."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Iterator

from fatnas.cli import build_parser

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

PAGE = "reference/cli.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated command-line page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=markdown_reference()))
    return files


def markdown_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Every command of `parser` (default: the `fatnas` parser), nested ones included, as Markdown sections."""
    parser = build_parser() if parser is None else parser
    lines = ["# Command line", "",
             "Generated from the argparse parsers of `fatnas/cli/` when the site is built. `fatnas ARGS` is the",
             "same command line as `python cli.py ARGS` in a checkout. Bad input prints one line naming the problem",
             "and exits with status 2; no flag may be abbreviated.", ""]
    for name, help_text, command in commands(parser):
        lines += _command_section(name, help_text, command)
    return "\n".join(lines)


def commands(parser: argparse.ArgumentParser,
             prefix: str | None = None) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(full name, one-line help, parser) of each command below `parser`, depth first, in declaration order."""
    prefix = parser.prog if prefix is None else prefix
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, command in action.choices.items():
            full = f"{prefix} {name}"
            yield full, helps.get(name, ""), command
            yield from commands(command, full)


def _command_section(name: str, help_text: str, command: argparse.ArgumentParser) -> list[str]:
    """One command: its heading, its help, and a table of its arguments."""
    rows = [_argument_row(action) for action in command._actions if _documented(action)]
    section = [f"## `{name}`", "", _escape(help_text) or _escape(command.description or ""), ""]
    if rows:
        section += ["| argument | default | meaning |", "|---|---|---|", *rows, ""]
    return section


def _documented(action: argparse.Action) -> bool:
    return not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) \
        and action.help != argparse.SUPPRESS


def _argument_row(action: argparse.Action) -> str:
    """`| --flag VALUE | default | help (choices) |` for one argument."""
    if action.option_strings:
        takes_value = action.nargs != 0
        metavar = action.metavar or action.dest.upper()
        value = "" if not takes_value else f" {metavar} ..." if action.nargs in ("*", "+") else f" {metavar}"
        form = ", ".join(f"`{option}{value}`" for option in action.option_strings)
    else:
        form = f"`{action.metavar or action.dest}`" + (" ..." if action.nargs in ("*", "+") else "")
    meaning = _escape(action.help or "")
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        meaning += f" (one of: {', '.join(f'`{choice}`' for choice in action.choices)})"
    return f"| {form} | {_default(action)} | {meaning} |"


def _default(action: argparse.Action) -> str:
    default = action.default
    if default is None or default is False or default == argparse.SUPPRESS or action.nargs == 0:
        return ""
    if isinstance(default, (list, tuple)):
        return " ".join(f"`{value}`" for value in default)
    return f"`{default}`"


def _escape(text: str) -> str:
    """Help text as plain table text: no pipe, tag or emphasis of its own."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*")

