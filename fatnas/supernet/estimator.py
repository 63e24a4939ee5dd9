"""The `supernet:ID` estimator: a config's score from a trained supernet's inherited weights, no training.

Loading a supernet and preparing its recalibration and validation images happen once per
process (cached by run id and device); each `estimate` then extracts, recalibrates and evaluates.
"""
from __future__ import annotations

import functools
import time

from ..errors import FatnasError
from ..estimate.base import Estimate, Report, register_estimator
from ..estimate.data import DataSplit
from ..model.config import FATConfig
from .run import TrainedSupernet, check_task, load_supernet
from .score import SubnetScorer


class SupernetEstimator:
    """Scores with a trained supernet: validation accuracy of the extracted, recalibrated sub-network."""

    name = "supernet"

    def __init__(self, trained: TrainedSupernet, scorer: SubnetScorer) -> None:
        self.trained, self.scorer = trained, scorer

    @classmethod
    def from_spec(cls, argument: str = "", *, data: DataSplit | None = None, device: str = "cpu",
                  **context: object) -> "SupernetEstimator":
        if not argument:
            raise FatnasError("estimator 'supernet' needs a run id: supernet:ID (train one with `fatnas supernet "
                              "train`)")
        return cls(*_loaded(argument, device, id(data) if data is not None else None, data))

    @property
    def provenance(self) -> str:
        return self.trained.provenance

    def estimate(self, cfg: FATConfig, report: Report | None = None) -> Estimate:
        start = time.perf_counter()
        score = self.scorer.score(cfg)
        metrics = dict(accuracy=score.accuracy, val_loss=score.val_loss, images_seen=0.0)
        return Estimate(score=score.accuracy, metrics=metrics, seconds=time.perf_counter() - start,
                        provenance=self.provenance)


@functools.lru_cache(maxsize=4)
def _loaded(run_id: str, device: str, data_key: int | None, data: DataSplit | None
            ) -> tuple[TrainedSupernet, SubnetScorer]:
    """One load per process; `data_key` (the data's identity) keys the cache, as DataSplit does not hash."""
    trained = load_supernet(run_id, device)
    return trained, trained.scorer(data)


def open_for_search(run_id: str, *, space, dataset: str, classes: tuple[int, ...], res: int) -> TrainedSupernet:
    """The supernet a search names, refused (one line) when it was trained for another task."""
    trained = load_supernet(run_id)
    check_task(trained, space=space, dataset=dataset, classes=classes, res=res)
    return trained


register_estimator("supernet", SupernetEstimator.from_spec)

__all__ = ["SupernetEstimator", "open_for_search"]
