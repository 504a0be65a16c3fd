"""genrevision.features.store: bad and unwritable cache entries never stop extraction."""
from __future__ import annotations

import numpy as np
import pytest

from genrevision.features.extraction import extract_dataset
from genrevision.features.store import FeatureStore

from testkit import TINY, rewrite_cache_entry


def test_bad_cache_entries_are_recomputed(tmp_path, three_songs):
    paths = [str(three_songs[n]) for n in ("c1.wav", "c2.wav", "m1.wav", "m2.wav")]
    store = FeatureStore(str(tmp_path / "cache"), TINY.to_dict())
    first = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert first.computed == 4 and store.read_json("layout.json")["original"] == first.features[paths[0]]["original"].shape[1]

    def ragged(a):
        a["harmonic"] = np.concatenate([a["harmonic"], a["harmonic"]])

    def nan(a):
        a["percussive"] = a["percussive"].copy()
        a["percussive"][0, 3] = np.nan

    changes = {paths[0]: (lambda a: a.pop("harmonic"), "no harmonic"),
               paths[1]: (lambda a: a.update(original=a["original"][:, :-1]), "original is"),
               paths[2]: (nan, "NaN or infinite values in percussive"),
               paths[3]: (ragged, "harmonic has 2 windows, original 1")}
    entries = {p: rewrite_cache_entry(store, p, change) for p, (change, _) in changes.items()}
    with pytest.warns(UserWarning) as rec:
        again = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert again.computed == 4 and again.cached == 0 and again.failures == []
    messages = [str(w.message) for w in rec]
    for p, (_, words) in changes.items():
        hit = [m for m in messages if m.startswith(f"{entries[p]}: bad cache entry for {p} (") and words in m
               and "recomputing" in m]
        assert len(hit) == 1, (p, messages)
        np.testing.assert_allclose(again.features[p]["original"], first.features[p]["original"], atol=2e-3)
    # Stored again, valid: a third run computes nothing.
    third = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert third.cached == 4 and third.computed == 0


def test_unwritable_cache_goes_on_in_memory(tmp_path, three_songs):
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the cache folder should be")
    paths = [str(three_songs[n]) for n in ("c1.wav", "m1.wav")]
    with pytest.warns(UserWarning) as rec:
        store = FeatureStore(str(blocker / "cache"), TINY.to_dict())
        res = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert sorted(res.features) == sorted(paths) and res.failures == [] and res.unstored == paths
    assert [str(w.message) for w in rec] == [
        f"{blocker / 'cache'}: cannot write to the feature cache (Not a directory); going on without storing "
        "features (this run keeps them in memory)",
        f"{blocker / 'cache'}: features of 2 tracks could not be stored in the cache (Not a directory); they were "
        "used in this run and will be computed again next time"]
