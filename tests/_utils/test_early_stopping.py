from genrevision._utils.early_stopping import EarlyStopping


def test_keeps_the_best_epoch_and_stops_after_patience():
    states = iter(range(100))
    stop = EarlyStopping(2, snapshot=lambda: next(states))
    assert [stop.update(e, loss) for e, loss in enumerate([3.0, 2.0, 2.5, 2.1], 1)] == [False, False, False, True]
    assert (stop.best_epoch, stop.best_loss, stop.best_state) == (2, 2.0, 2)


def test_min_delta_and_initial_loss():
    stop = EarlyStopping(1, snapshot=lambda: None, min_delta=0.5, initial_loss=1.0)
    assert stop.update(1, 0.8) is True  # not lower by more than min_delta
    assert stop.best_epoch == 0


def test_without_validation_the_last_epoch_is_kept():
    stop = EarlyStopping(1, snapshot=lambda: "w", initial_loss=None)
    assert not any(stop.update(e, None) for e in range(1, 6))
    assert stop.best_epoch == 5 and stop.best_loss is None
