"""A weight-sharing FAT supernet: train once on a space, then score any of its configs in seconds.

Layer: beside `runs` (a supernet is a run folder of weights); may import model, estimate and runs.
`import fatnas.supernet` registers the `supernet:ID` estimator (`fatnas.estimate.make_estimator`).
"""
from .elastic import SliceMap, Supernet, SupernetError, extreme_config, largest_config
from .estimator import SupernetEstimator
from .run import SupernetTask, TrainedSupernet, load_supernet, resume_supernet, train_supernet
from .train import TrainSettings

__all__ = ["SliceMap", "Supernet", "SupernetError", "SupernetEstimator", "SupernetTask", "TrainSettings",
           "TrainedSupernet", "extreme_config", "largest_config", "load_supernet", "resume_supernet",
           "train_supernet"]
