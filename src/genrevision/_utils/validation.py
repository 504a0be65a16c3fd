"""Parameter checks, written once (scikit-learn's ``check_scalar`` / ``_parameter_constraints``).

:func:`check_scalar` checks one number and raises with one sentence that says the valid
range (``"folds must be an integer >= 2, got 1"``). A class with several parameters
declares them as data, a ``_parameter_constraints`` dict of :class:`Interval` (a number
in a range), :class:`Options` (one of a few values) or :class:`Grid` (a non-empty
sequence of numbers in a range), and calls :func:`validate_params` once::

    _parameter_constraints = {"inner_cv": Interval(int, 2, None),
                              "learning_rate": Interval(float, 0, None, closed="neither")}

    def _check_params(self):
        validate_params(self, self._parameter_constraints)

Wrong values raise ``ValueError`` (a wrong type too: genrevision has always answered a
bad parameter with ``ValueError``, and the CLI prints it as one line).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Interval", "Options", "Grid", "check_scalar", "check_grid", "validate_params"]

_CLOSED = ("both", "left", "right", "neither")


def _range_text(kind, min, max, closed: str) -> str:
    left = closed in ("both", "left")
    right = closed in ("both", "right")
    if min is not None and max is not None:
        return f"in {'[' if left else '('}{min}, {max}{']' if right else ')'}"
    if min is not None:
        return f"{'>=' if left else '>'} {min}"
    if max is not None:
        return f"{'<=' if right else '<'} {max}"
    return ""


def check_scalar(value, name: str, *, kind=int, min=None, max=None, include_boundaries: str = "both",
                 whole_floats: bool = False, finite: bool = True):
    """``value`` if it is a number of ``kind`` in the range, else ``ValueError`` saying the range.

    Parameters
    ----------
    value : object
        What the caller passed.
    name : str
        The parameter's name, as the caller spells it (the message starts with it).
    kind : int or float
        ``int``: an integer (Python or NumPy; ``True``/``False`` are refused). ``float``: any
        real number (integers too; booleans refused).
    min, max : number or None
        Bounds; None leaves that side open.
    include_boundaries : {"both", "left", "right", "neither"}
        Which bounds are allowed values (scikit-learn's spelling).
    whole_floats : bool
        With ``kind=int``: accept a float with no fractional part (``3.0``), as values read
        from JSON may be.
    finite : bool
        With ``kind=float``: refuse NaN and ±inf.

    Returns
    -------
    The value, unchanged.

    Examples
    --------
    >>> check_scalar(3, "folds", kind=int, min=2)
    3
    >>> check_scalar(1, "folds", kind=int, min=2)
    Traceback (most recent call last):
    ...
    ValueError: folds must be an integer >= 2, got 1
    """
    if include_boundaries not in _CLOSED:
        raise ValueError(f"include_boundaries must be one of {', '.join(_CLOSED)}, got {include_boundaries!r}")
    rng = _range_text(kind, min, max, include_boundaries)
    if kind is int:
        ok = not isinstance(value, bool) and (
            isinstance(value, numbers.Integral)
            or (whole_floats and isinstance(value, numbers.Real) and math.isfinite(value) and int(value) == value))
        what = "an integer" + (f" {rng}" if rng else "")
    else:
        ok = (not isinstance(value, bool) and isinstance(value, numbers.Real)
              and (not finite or math.isfinite(value)))
        what = rng if rng else ("a finite number" if finite else "a number")
    if ok:
        left = include_boundaries in ("both", "left")
        right = include_boundaries in ("both", "right")
        if min is not None and not (value >= min if left else value > min):
            ok = False
        if max is not None and not (value <= max if right else value < max):
            ok = False
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_grid(values, name: str, *, min=0, include_min: bool = False):
    """``values`` if it is a non-empty sequence of finite numbers above ``min`` (at or above with
    ``include_min``), else ``ValueError`` ("C_grid must be a non-empty sequence of numbers > 0")."""
    bound = f"{'>=' if include_min else '>'} {min}"
    try:
        items = list(values)
    except TypeError:
        items = []
    ok = bool(items) and not isinstance(values, (str, bytes))
    for v in items if ok else ():
        if (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
                or not (v >= min if include_min else v > min)):
            ok = False
    if not ok:
        raise ValueError(f"{name} must be a non-empty sequence of numbers {bound}, got {values!r}")
    return values


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` (int or float) between ``min`` and ``max`` (None: unbounded)."""

    kind: type
    min: Any = None
    max: Any = None
    closed: str = "both"
    whole_floats: bool = False
    none_ok: bool = False

    def check(self, value, name):
        if value is None and self.none_ok:
            return value
        return check_scalar(value, name, kind=self.kind, min=self.min, max=self.max,
                            include_boundaries=self.closed, whole_floats=self.whole_floats)


@dataclass(frozen=True)
class Options:
    """One of a few values (compared with ``==``)."""

    values: tuple

    def check(self, value, name):
        if not any(v is value or (not isinstance(value, bool) and value == v) for v in self.values):
            shown = ", ".join(repr(v) for v in self.values)
            raise ValueError(f"{name} must be one of {shown}, got {value!r}")
        return value


@dataclass(frozen=True)
class Grid:
    """A non-empty sequence of numbers above ``min`` (at or above with ``include_min``)."""

    min: Any = 0
    include_min: bool = False

    def check(self, value, name):
        return check_grid(value, name, min=self.min, include_min=self.include_min)


def validate_params(params, constraints: Mapping[str, Any]) -> None:
    """Check each parameter named in ``constraints`` (an object's attributes, or a dict).

    A constraint is an :class:`Interval`, :class:`Options` or :class:`Grid`, or a tuple of
    them meaning "any of these" (the first one's message is raised when none fits).
    """
    get = params.get if isinstance(params, Mapping) else (lambda k: getattr(params, k))
    for name, constraint in constraints.items():
        value = get(name)
        alternatives = constraint if isinstance(constraint, tuple) else (constraint,)
        first = None
        for c in alternatives:
            try:
                c.check(value, name)
                break
            except ValueError as err:
                first = first or err
        else:
            raise first
