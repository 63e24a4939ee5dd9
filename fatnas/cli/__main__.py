"""`python -m fatnas.cli ...`: the same command line as the `fatnas` console script."""
from . import run

if __name__ == "__main__":
    run()
