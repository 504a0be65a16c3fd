"""The package's architecture, read from its imports (``ast``; imports inside functions count).

Layers, lowest first: a module may import its own layer or a lower one, never a higher one, and
no module imports another subpackage's private names (``_x``). The package root (``__init__``,
the public facade) re-exports from every layer and is not a layer itself; ``from .. import
__version__`` reaches it from anywhere.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import genrevision

ROOT = Path(genrevision.__file__).resolve().parent
#: Lowest first; names on one line are one layer.
LAYERS = [("_utils", "errors"), ("signal",), ("features",), ("learn",), ("recipes",), ("model",), ("evaluation",),
          ("apps",), ("cli",)]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
#: The upward import the agreed tree still has, a data type that lives above a layer that uses
#: it: train_model reads a dataset (evaluation.dataset). Moving dataset.py below model/ would
#: remove it; until then it is the only one allowed (and must still exist).
ALLOWED_UPWARD = {
    ("genrevision.model.genre_model", "genrevision.evaluation.dataset"),
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if rel.parts == ("__init__",):
            continue  # the facade
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        yield path, "genrevision." + ".".join(parts), path.name == "__init__.py"


def _imports(path: Path, name: str, is_package: bool):
    """(line, imported module, [names]) of every import in a module, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module, [a.name for a in node.names]


def _layer(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[1] if parts[0] == "genrevision" and len(parts) > 1 else None


def _targets(module: str, names: list[str]):
    """The genrevision modules an import reaches: ``from genrevision.features import tuning``
    reaches genrevision.features.tuning; ``from genrevision import __version__`` the root only."""
    if module == "genrevision":
        return [f"genrevision.{n}" for n in names if not n.startswith("__")]
    return [module] if module.startswith("genrevision.") else []


def test_every_module_has_a_layer():
    assert {n for n in (_layer(m) for _, m, _ in _modules()) if n} <= set(RANK), "a new top-level module: give it a layer"


def test_layer_order():
    wrong, allowed = [], set()
    for path, name, is_package in _modules():
        own = RANK[_layer(name)]
        for line, module, names in _imports(path, name, is_package):
            for target in _targets(module, names):
                if RANK.get(_layer(target), -1) > own:
                    if (name, target) in ALLOWED_UPWARD:
                        allowed.add((name, target))
                    else:
                        wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} ({_layer(name)}) imports {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)
    assert allowed == ALLOWED_UPWARD, f"no longer needed, drop from ALLOWED_UPWARD: {ALLOWED_UPWARD - allowed}"


def test_no_private_names_across_subpackages():
    wrong = []
    for path, name, is_package in _modules():
        for line, module, names in _imports(path, name, is_package):
            if module.startswith("genrevision.") and _layer(module) != _layer(name):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                private += [p for p in module.split(".")[2:] if p.startswith("_")]
                if private:
                    wrong.append(f"{path.relative_to(ROOT)}:{line}: {name} imports {', '.join(private)} from {module}")
    assert not wrong, "private names imported across subpackages:\n" + "\n".join(wrong)


def test_library_never_imports_cli():
    wrong = [f"{path.relative_to(ROOT)}:{line}" for path, name, is_package in _modules() if _layer(name) != "cli"
             for line, module, names in _imports(path, name, is_package)
             if any(_layer(t) == "cli" for t in _targets(module, names))]
    assert not wrong, wrong
    # And at run time: the research API loads no part of the command line.
    code = ("import sys, genrevision, genrevision.evaluation.experiment, genrevision.evaluation.protocols, "
            "genrevision.evaluation.reports, genrevision.apps.embeddings, genrevision.apps.hear, "
            "genrevision.evaluation.dataset; genrevision.evaluate; "
            "assert not [m for m in sys.modules if m.startswith('genrevision.cli')], sorted(sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
