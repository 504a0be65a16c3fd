"""One exception hierarchy: every input error is a GenrevisionError and keeps its old base and home."""
import pickle

import pytest

import genrevision
from genrevision import errors


@pytest.mark.parametrize("module, name, base", [
    ("audio", "AudioError", ValueError), ("dataset", "DatasetError", ValueError), ("model", "ModelError", ValueError),
    ("tagging", "TagError", ValueError), ("files", "NotRegularFile", OSError),
    ("backbone", "BackboneUnavailable", RuntimeError), ("ray_engine", "RayUnavailable", RuntimeError),
])
def test_old_names_are_the_hierarchys(module, name, base):
    import importlib

    cls = getattr(importlib.import_module(f"genrevision.{module}"), name)
    assert cls is getattr(errors, name)
    assert issubclass(cls, errors.GenrevisionError) and issubclass(cls, base)


def test_one_line_and_pickled_whole():
    for err in (errors.AudioError(b"\x00", "bad"), errors.ModelError("m.model", "damaged"),
                errors.TagError("a.mp3", "cannot write"), errors.NotRegularFile("/tmp", "a folder")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err) and "\n" not in str(err)
    assert str(errors.AudioError(b"x", "bad")) == "<bytes>: bad"
    assert genrevision.GenrevisionError is errors.GenrevisionError


def test_cli_prints_one_line(tmp_path, capsys):
    from genrevision.cli import main

    assert main(["predict", str(tmp_path / "none.wav"), "--model", str(tmp_path / "missing.model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("genrevision: ") and "missing.model" in err[0]
