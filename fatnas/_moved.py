"""Old module paths of fatnas 0.1 (before the layer packages), kept importable for one release.

`import fatnas.cost` (or `from fatnas.cost import analytic_cost`, or a pickle naming
`fatnas.proxy.ProxySettings`) still works: a finder on `sys.meta_path` answers each old name
with a small module that forwards every attribute to the new home, after a DeprecationWarning.
Base layer: imports nothing of fatnas until an old name is imported.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

MOVED = {  # old name -> new module (and where the rest of a split module went)
    "fatnas.config": "fatnas.model.config",
    "fatnas.counting": "fatnas.model.counting",
    "fatnas.variants": "fatnas.model.variants",
    "fatnas.space": "fatnas.model.space",
    "fatnas.deploy": "fatnas.model.deploy",
    "fatnas.cost": "fatnas.estimate.cost fatnas.estimate.latency.measure",
    "fatnas.latency": "fatnas.estimate.latency",
    "fatnas.data": "fatnas.estimate.data",
    "fatnas.proxy": "fatnas.estimate.proxy",
    "fatnas.zero_cost": "fatnas.estimate.zero_cost",
    "fatnas.liveness": "fatnas.estimate.liveness",
    "fatnas.store": "fatnas.runs.store",
    "fatnas.export": "fatnas.runs.export",
    "fatnas.rank_stats": "fatnas.study.rank_stats",
    "fatnas.trust": "fatnas.study.trust",
    "fatnas.fidelity": "fatnas.study.fidelity",
    "fatnas.dashboard": "fatnas.report.dashboard",
}

# an old module name that is also a function of the API: calling the old module calls it
CALLABLE = {"fatnas.cost": ("fatnas.api", "cost")}


class MovedModule(types.ModuleType):
    """An old module path: every attribute is read from (and written to) the module at its new home."""

    def __init__(self, name: str, target: types.ModuleType, *more: types.ModuleType) -> None:
        super().__init__(name, target.__doc__)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_more", more)  # where the rest of a module that was split went

    def __getattr__(self, name: str) -> Any:
        for module in (object.__getattribute__(self, "_target"), *object.__getattribute__(self, "_more")):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("__"):
            object.__setattr__(self, name, value)
        else:  # monkeypatching an old path patches the real module
            setattr(object.__getattribute__(self, "_target"), name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.__name__ not in CALLABLE:
            raise TypeError(f"module {self.__name__!r} is not callable")
        module, name = CALLABLE[self.__name__]
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    def __dir__(self) -> list[str]:
        modules = (object.__getattribute__(self, "_target"), *object.__getattribute__(self, "_more"))
        return sorted({name for module in modules for name in dir(module)})


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old names of `MOVED`; loading one warns and returns a `MovedModule`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name].split()
        warnings.warn(f"{spec.name} moved to {' and '.join(new)}; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=2)
        return MovedModule(spec.name, *(importlib.import_module(name) for name in new))

    def exec_module(self, module: types.ModuleType) -> None:
        pass


def install() -> None:
    """Put the finder on `sys.meta_path` once (the first fatnas import does)."""
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())  # before any finder of an older install
