"""MkDocs hook: adds reference/cli.md, generated from the argparse parsers (fatnas.cli.reference) at build time."""
from __future__ import annotations

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

from fatnas.cli.reference import markdown_reference

PAGE = "reference/cli.md"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated command-line page to the site's files (it is never written into docs/)."""
    files.append(File.generated(config, PAGE, content=markdown_reference()))
    return files
