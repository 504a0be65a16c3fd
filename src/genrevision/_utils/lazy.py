"""Packages that re-export their modules' public names on first use (PEP 562).

Every subpackage's ``__init__`` is a table (name → module) and one call to
:func:`lazy_exports`, so ``import genrevision.features`` stays cheap: torch and
librosa load only when a name that needs them is used.
"""
from __future__ import annotations

import importlib
import sys
import warnings

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: dict, submodules, *, legacy: str | None = None):
    """``(__getattr__, __dir__)`` for ``package``: each of ``exports`` (name → module) is
    imported from its module on first use and kept.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Public name → the submodule (relative name) that defines it.
    submodules : iterable of str
        The package's modules (listed by ``dir()``).
    legacy : str, optional
        The module this package was before it became a package: its other names
        (private helpers included) still resolve, with a DeprecationWarning naming
        where they live now.
    """
    submodules = frozenset(submodules)

    def __getattr__(name):
        module = exports.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f".{module}", package), name)
            setattr(sys.modules[package], name, value)
            return value
        if legacy is not None and name not in submodules and not (name.startswith("__") and name.endswith("__")):
            old = importlib.import_module(f".{legacy}", package)
            if hasattr(old, name):
                warnings.warn(f"{package}.{name} moved to {old.__name__}.{name}; import it from there",
                              DeprecationWarning, stacklevel=2)
                return getattr(old, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(exports) | submodules)

    return __getattr__, __dir__
