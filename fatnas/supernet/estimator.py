"""The `supernet:ID` estimator: a config's score from a trained supernet's inherited weights, no training.

A supernet is loaded once per process (cached by its folder, weights' hash and device), and its recalibration and
validation images are prepared at the first `estimate`; each `estimate` then extracts,
recalibrates and evaluates one sub-network. The images come from the supernet's own split of its data set, not
the caller's: a search or study drawing another split (another seed) would otherwise score on images the
supernet trained on.
"""
from __future__ import annotations

import functools
import time
from typing import Any

from ..errors import FatnasError
from ..estimate.base import Estimate, Report, register_estimator
from ..model.config import FATConfig
from ..runs.store import open_run
from .run import TrainedSupernet, check_task, load_supernet
from .score import SubnetScorer


class SupernetEstimator:
    """Scores with a trained supernet: validation accuracy of the extracted, recalibrated sub-network."""

    name = "supernet"

    def __init__(self, trained: TrainedSupernet) -> None:
        self.trained = trained

    @classmethod
    def from_spec(cls, argument: str = "", *, device: str = "cpu", **context: Any) -> "SupernetEstimator":
        """`supernet:ID`; the caller's `data` in `context` is not used (the supernet's own split is)."""
        if not argument:
            raise FatnasError("estimator 'supernet' needs a run id: supernet:ID (train one with `fatnas supernet "
                              "train`)")
        return cls(_trained(*_identity(argument), device))

    @property
    def provenance(self) -> str:
        return self.trained.provenance

    @property
    def val_images(self) -> int:
        """The validation images a score is measured on (at most; fewer where the split has fewer)."""
        return self.trained.settings.val_images

    @property
    def res(self) -> int:
        """The resolution the supernet was trained at, and scores at."""
        return self.trained.settings.res

    def check_task(self, *, space: Any, dataset: str, classes: tuple[int, ...], res: int) -> None:
        check_task(self.trained, space=space, dataset=dataset, classes=classes, res=res)

    def network(self, cfg: FATConfig) -> Any:
        """The sub-network with its inherited weights and BatchNorm recalibrated on the task's images."""
        return _scorer(self.trained).network(cfg)

    def estimate(self, cfg: FATConfig, report: Report | None = None) -> Estimate:
        start = time.perf_counter()
        score = _scorer(self.trained).score(cfg)
        metrics = dict(accuracy=score.accuracy, val_loss=score.val_loss, images_seen=0.0)
        return Estimate(score=score.accuracy, metrics=metrics, seconds=time.perf_counter() - start,
                        provenance=self.provenance)


def _identity(run_id: str) -> tuple[str, str | None]:
    """What a loaded supernet is cached by: its run folder (one id may name another folder under another runs
    root) and its weights' hash (a run retrained in place is loaded again)."""
    run = open_run(run_id)
    meta = run.read_meta()
    return str(run.path.resolve()), meta.get("weights_sha256")


@functools.lru_cache(maxsize=4)
def _trained(path: str, weights_sha256: str | None, device: str) -> TrainedSupernet:
    return load_supernet(path, device)


SCORERS_KEPT = 4
# (supernet, its scorer), newest last; the cache holds the objects, so their ids cannot be reused
_SCORERS: list[tuple[TrainedSupernet, SubnetScorer]] = []


def _scorer(trained: TrainedSupernet) -> SubnetScorer:
    """One scorer per loaded supernet in this process, on the supernet's own task and split."""
    for entry in _SCORERS:
        if entry[0] is trained:
            return entry[1]
    _SCORERS.append((trained, trained.scorer()))
    del _SCORERS[:-SCORERS_KEPT]
    return _SCORERS[-1][1]


register_estimator("supernet", SupernetEstimator.from_spec)

__all__ = ["SupernetEstimator"]
