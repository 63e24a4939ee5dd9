"""The one base class for bad user input; the CLI turns it into a one-line error and exit 2."""


class FatnasError(ValueError):
    """Bad input: a malformed budget, an unknown model, an invalid config or space, a missing run."""


def check_positive(**values: object) -> None:
    """Each given value (None: not given) must be above 0; the error names it as its command-line flag."""
    for name, value in values.items():
        if value is not None and value <= 0:  # type: ignore[operator]
            raise FatnasError(f"--{name.replace('_', '-')} {value}: must be a positive number")
