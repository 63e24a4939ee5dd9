"""The one base class for bad user input; the CLI turns it into a one-line error and exit 2."""


class FatnasError(ValueError):
    """Bad input: a malformed budget, an unknown model, an invalid config or space, a missing run."""


DEVICE_FORMS = "cpu, cuda, cuda:N"


def check_device(device: str, *, available: bool = True) -> str:
    """A device of the form cpu, cuda or cuda:N; with `available`, one that torch can use here."""
    import re

    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise FatnasError(f"--device {device!r}: accepted forms: {DEVICE_FORMS}")
    if available and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise FatnasError("--device cuda: no CUDA device is available here; use --device cpu")
    return device


def check_positive(**values: object) -> None:
    """Each given value (None: not given) must be above 0; the error names it as its command-line flag."""
    for name, value in values.items():
        if value is not None and value <= 0:  # type: ignore[operator]
            raise FatnasError(f"--{name.replace('_', '-')} {value}: must be a positive number")
