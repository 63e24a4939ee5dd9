"""`python cli.py ...` in a checkout: the same command line as the installed `fatnas` script."""
from fatnas.cli import run

if __name__ == "__main__":
    run()
