"""Runs layer: `runs/<id>/` read and written under its lock, the Pareto front, exported variants; imports model and
estimate."""
