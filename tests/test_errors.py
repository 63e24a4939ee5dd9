"""One base class for user errors, mapped to exit status 2 in one place; the API raises what the CLI reports."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import fatnas
from fatnas import cli
from fatnas.errors import FatnasError
from fatnas.estimate.proxy import ProxyError, ProxySettings
from fatnas.scaling import ScalingError, ScalingSettings
from fatnas.study.fidelity import FidelityError


def fatnas_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(fatnas.__path__, "fatnas.")]


def test_every_error_class_of_the_package_is_a_fatnas_error():
    errors = []
    for name in fatnas_modules():
        module = importlib.import_module(name)
        errors += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                   if issubclass(cls, Exception) and cls.__module__ == name]
    assert len(errors) >= 10  # config, space, budget, data, proxy, run, model, export, scaling, fidelity, ...
    assert [cls.__qualname__ for cls in errors if not issubclass(cls, FatnasError)] == []


@pytest.mark.parametrize("make, argv, error", [
    (lambda: ScalingSettings(threads=0), ["scale", "fat_b0", "--train", "0", "--threads", "0"], ScalingError),
    (lambda: ScalingSettings(threads=10**11), ["scale", "fat_b0", "--train", "0", "--threads", "100000000000"],
     ScalingError),
    (lambda: ProxySettings(train_images=0), ["scale", "fat_b0", "--train", "0", "--proxy-images", "0"], ProxyError),
    (lambda: ProxySettings(res=-2), ["scale", "fat_b0", "--train", "0", "--proxy-res", "-2"], ProxyError),
])
def test_the_api_raises_the_error_the_cli_reports(make, argv, error, capsys, isolated_dirs):
    with pytest.raises(error) as raised:
        make()
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"error: {raised.value}\n"
    assert not (isolated_dirs / "runs").exists()


def test_a_fidelity_study_refuses_zero_workers_through_the_api_and_the_cli(capsys, isolated_dirs):
    from fatnas.estimate.cost import parse_budget
    from fatnas.model.space import load_space
    from fatnas.study.fidelity import StudySettings

    with pytest.raises(FidelityError, match="workers = 0: must be a positive whole number"):
        StudySettings(space=load_space("fat"), budget=parse_budget("2GFLOPs"), workers=0)
    assert cli.main(["fidelity", "--workers", "0"]) == 2
    assert "workers = 0: must be a positive whole number" in capsys.readouterr().err
