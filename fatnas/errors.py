"""The one base class for bad user input; the CLI turns it into a one-line error and exit 2."""


class FatnasError(ValueError):
    """Bad input: a malformed budget, an unknown model, an invalid config or space, a missing run."""
