"""genrevision._utils.files: only regular files are opened (a FIFO never blocks a reader)."""
from __future__ import annotations

import pytest

from genrevision import ModelError, load_model
from genrevision.evaluation.dataset import DatasetError, load_dataset
from genrevision.features.store import content_digest
from genrevision.signal.audio import AudioError, audio_info, load_audio

from testkit import Unblock, make_fifo


def test_fifo_is_refused_by_every_reader(tmp_path, excerpt):
    from genrevision._utils.files import NotRegularFile

    fifo = make_fifo(tmp_path / "x.wav")
    with Unblock(fifo):
        for call in (load_audio, audio_info):
            with pytest.raises(AudioError) as info:
                call(fifo)
            assert str(info.value) == f"{fifo}: not a regular file (a named pipe)"
        with pytest.raises(NotRegularFile, match="not a regular file"):
            content_digest(fifo)
        manifest = make_fifo(tmp_path / "m.csv")
        with Unblock(manifest), pytest.raises(DatasetError, match=r"m\.csv: not a regular file \(a named pipe\)"):
            load_dataset(manifest)
        model = make_fifo(tmp_path / "g.model")
        with Unblock(model), pytest.raises(ModelError) as info:
            load_model(model)
        assert str(info.value) == f"{model}: not a regular file (a named pipe)"
