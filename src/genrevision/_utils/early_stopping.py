"""The early-stopping rule of every trained network (SoftmaxHead, FineTuner), written once."""
from __future__ import annotations

import math
from typing import Any, Callable

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Keep the state of the epoch with the lowest validation loss; stop after ``patience``
    epochs in a row without a loss lower than the best by more than ``min_delta``.

    ``snapshot()`` returns a copy of what to keep (weights); it is called at the start and
    whenever an epoch is best. An epoch with no validation loss (``None``: nothing held
    out) is always kept, so training then runs to its last epoch and keeps that.

    >>> stop = EarlyStopping(patience=2, snapshot=lambda: None)
    >>> [stop.update(e, loss) for e, loss in enumerate([3.0, 2.0, 2.5, 2.1], start=1)]
    [False, False, False, True]
    >>> stop.best_epoch, stop.best_loss
    (2, 2.0)
    """

    def __init__(self, patience: int, *, snapshot: Callable[[], Any], min_delta: float = 0.0,
                 initial_loss: float | None = math.inf):
        self.patience, self.snapshot, self.min_delta = int(patience), snapshot, float(min_delta)
        self.best_loss, self.best_epoch, self.best_state = initial_loss, 0, snapshot()
        self.stale = 0

    def update(self, epoch: int, loss: float | None) -> bool:
        """Record one epoch's validation loss; True when training should stop."""
        if loss is None or self.best_loss is None or loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch, self.best_state = loss, epoch, self.snapshot()
            self.stale = 0
            return False
        self.stale += 1
        return self.stale >= self.patience
