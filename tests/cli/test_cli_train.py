"""`genrevision train` from the command line: real tracks, clear one-line errors."""
from __future__ import annotations

import soundfile as sf

from genrevision.features.store import FeatureStore

from testkit import SR, genre_paths, rewrite_cache_entry, run_cli


def test_train_with_one_group_per_genre_says_what_to_do(tmp_path, three_songs):
    m = tmp_path / "groups.csv"
    m.write_text("path,label,group\nc1.wav,classical,bach\nc2.wav,classical,haydn\nm1.wav,metal,slayer\n"
                 "m2.wav,metal,slayer\n")
    proc = run_cli("train", m, "--model", tmp_path / "g.model", "--recipe", "paper", "--cache", tmp_path / "cache",
                   "--jobs", "0", "--quiet")
    assert proc.returncode == 2 and not (tmp_path / "g.model").exists()
    assert proc.stderr.strip() == (
        f"genrevision: error: {tmp_path}: at least 2 genres need tracks of 2 or more groups (artists/albums) for "
        "the grouped inner cross-validation; one group only: metal (2 tracks, all by slayer); add tracks of other "
        "artists or leave the group column empty")


def test_cli_train_on_bad_cache_entry(tmp_path, three_songs):
    m = tmp_path / "songs.csv"
    m.write_text("path,label\nc1.wav,classical\nc2.wav,classical\nm1.wav,metal\nm2.wav,metal\n")
    cache = tmp_path / "cache"
    args = ("train", m, "--model", tmp_path / "s.model", "--recipe", "paper", "--cache", cache, "--jobs", "0", "--quiet")
    assert run_cli(*args).returncode == 0
    from genrevision.recipes import get_recipe

    store = FeatureStore(str(cache), get_recipe("paper").features.to_dict())
    entry = rewrite_cache_entry(store, three_songs["m1.wav"], lambda a: a.pop("original"))
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "trained paper model on 4 tracks" in proc.stdout
    assert proc.stderr.splitlines() == [f"genrevision: warning: {entry}: bad cache entry for {three_songs['m1.wav']} "
                                        "(no original); recomputing"]


def test_manifest_with_empty_label_and_single_track_label(gtzan_root, tmp_path):
    rows = ["path,label"]
    for g in ("classical", "metal"):
        for p in genre_paths(gtzan_root, g)[:3]:
            rows.append(f"{p},{g}")
    rows.append(f"{genre_paths(gtzan_root, 'jazz')[0]},")  # a row without a label
    ok = tmp_path / "ok.csv"
    ok.write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    proc = run_cli("train", ok, "--model", tmp_path / "m.model", "--recipe", "paper", "--cache", cache,
                   "--jobs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "trained paper model on 6 tracks of 2 genres" in proc.stdout
    assert "1 files failed:" in proc.stderr and "no label (row 8" in proc.stderr
    # One genre with a single track: a clear one-line error, no model written.
    one = tmp_path / "one.csv"
    one.write_text("\n".join(rows[:-1] + [f"{genre_paths(gtzan_root, 'jazz')[1]},opera"]) + "\n")
    proc = run_cli("train", one, "--model", tmp_path / "one.model", "--recipe", "paper", "--cache", cache,
                   "--jobs", "0", "--quiet")
    assert proc.returncode == 2 and not (tmp_path / "one.model").exists()
    assert proc.stderr.strip().endswith("every genre needs at least 2 usable tracks; too few for 'opera' (1)")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_train_cli_paper_recipe(gtzan_root, tmp_path):
    """``genrevision train`` on a folder of short real excerpts, then ``predict`` with the file it wrote."""
    data = tmp_path / "data"
    for g in ("classical", "metal"):
        (data / g).mkdir(parents=True)
        for i in range(3):
            y, _ = sf.read(genre_paths(gtzan_root, g)[i], frames=8 * SR, dtype="float32")
            sf.write(data / g / f"{g}{i}.wav", y, SR)
    model = tmp_path / "m.model"
    proc = run_cli("train", data, "--model", model, "--recipe", "paper", "--paper-weights",
                   "--cache", tmp_path / "cache", "--jobs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "trained paper model on 6 tracks of 2 genres (classical, metal)" in proc.stdout
    assert "original 0.50, harmonic 0.10, percussive 0.40" in proc.stdout
    proc = run_cli("predict", data / "classical" / "classical0.wav", "--model", model, "--quiet")
    assert proc.returncode == 0 and ": classical (" in proc.stdout
