"""fatnas variants become timm models whenever timm is imported, before or after fatnas, as timm's own model
files register theirs; `import fatnas` never imports timm itself (timm takes seconds to import).

A finder on `sys.meta_path` waits for `timm.models`, lets it load, then registers the variants
(`fatnas.runs.export.register_timm_models`) and leaves the path. If timm is already loaded, it registers at once.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any, Sequence

TIMM_MODELS = "timm.models"


def _register() -> None:
    """Register the variants; a failure (a variants folder that cannot be read) warns and never breaks timm."""
    try:
        from .runs.export import register_timm_models

        register_timm_models()
    except Exception as exc:  # noqa: BLE001 - whatever it is, `import timm` must still work
        warnings.warn(f"fatnas: variants not registered with timm: {exc}", stacklevel=2)


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands `timm.models` to the finders after it, and registers once it has run."""

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != TIMM_MODELS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            _register()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Register now if timm is loaded, else as soon as it is (no-op when timm is not installed: nothing loads it)."""
    if TIMM_MODELS in sys.modules:
        _register()
    elif not any(isinstance(finder, _RegisterAfterTimm) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterTimm())
