"""check_scalar / validate_params: one sentence naming the parameter and its valid range."""
import numpy as np
import pytest

from genrevision._utils.validation import Grid, Interval, Options, check_grid, check_scalar, validate_params


@pytest.mark.parametrize("value, kwargs, message", [
    (1, dict(kind=int, min=2), "folds must be an integer >= 2, got 1"),
    (0, dict(kind=int, min=1, max=32), r"folds must be an integer in [1, 32], got 0"),
    (True, dict(kind=int, min=0), "folds must be an integer >= 0, got True"),
    (2.5, dict(kind=int, min=1, whole_floats=True), "folds must be an integer >= 1, got 2.5"),
    (0.0, dict(kind=float, min=0, include_boundaries="neither"), "folds must be > 0, got 0.0"),
    (1.0, dict(kind=float, min=0, max=1, include_boundaries="left"), r"folds must be in [0, 1), got 1.0"),
    (float("nan"), dict(kind=float, min=0), "folds must be >= 0, got nan"),
    ("3", dict(kind=float), "folds must be a finite number, got '3'"),
])
def test_check_scalar_says_the_range(value, kwargs, message):
    with pytest.raises(ValueError) as err:
        check_scalar(value, "folds", **kwargs)
    assert str(err.value) == message


def test_check_scalar_accepts_numpy_and_whole_floats():
    assert check_scalar(np.int64(3), "n", kind=int, min=2) == 3
    assert check_scalar(3.0, "n", kind=int, min=2, whole_floats=True) == 3.0
    assert check_scalar(np.float32(0.5), "p", kind=float, min=0, max=1) == np.float32(0.5)


def test_check_grid():
    assert check_grid((0.1, 1.0), "C_grid") == (0.1, 1.0)
    for bad in ((), "abc", (1.0, -1.0), (1.0, float("inf"))):
        with pytest.raises(ValueError, match="C_grid must be a non-empty sequence of numbers > 0"):
            check_grid(bad, "C_grid")
    assert check_grid([0.0], "w", include_min=True) == [0.0]


def test_validate_params_on_objects_and_dicts():
    constraints = {"inner_cv": Interval(int, 2, None), "solver": Options(("lbfgs", "adam")),
                   "C": Interval(float, 0, None, closed="neither", none_ok=True), "grid": Grid(0),
                   "gamma": (Interval(float, 0, None, closed="neither"), Options(("scale",)))}
    good = {"inner_cv": 3, "solver": "adam", "C": None, "grid": [1.0], "gamma": "scale"}
    validate_params(good, constraints)

    class Est:
        pass

    est = Est()
    est.__dict__.update(good, solver="sgd")
    with pytest.raises(ValueError, match="solver must be one of 'lbfgs', 'adam', got 'sgd'"):
        validate_params(est, constraints)
    with pytest.raises(ValueError, match="gamma must be > 0"):  # the first alternative's message
        validate_params({**good, "gamma": "auto"}, constraints)
