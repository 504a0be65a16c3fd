"""The Ray engine on a real local Ray runtime (2 CPUs, started once for this module): the same
features, failures and predictions as the local engine, the shared cache, Parquet output, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray  # installed by `make setup` (the ray extra): no skip when it is missing
import soundfile as sf

from testkit import SR, run_cli
from genrevision.features.extraction import extract_dataset
from genrevision.model.genre_model import load_model
from genrevision.apps.ray_engine import PARQUET_COLUMNS, extract_dataset_ray, predict_files_ray, read_parquet_features
from genrevision.features.store import FeatureStore, content_digest
from testkit import genre_paths


@pytest.fixture(scope="module")
def ray_runtime():
    """A real local Ray runtime for every test of this module; its address lets a CLI subprocess join it."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", object_store_memory=300 * 2**20)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def tracks(gtzan_root, tmp_path_factory):
    """Three real tracks of three genres, an undecodable file and a missing one."""
    d = tmp_path_factory.mktemp("ray-tracks")
    bad = d / "bad.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    good = [genre_paths(gtzan_root, g)[1] for g in ("blues", "classical", "metal")]
    return good, [*good, str(bad), str(d / "missing.wav")]


@pytest.fixture(scope="module")
def local_run(tracks, small_settings):
    return extract_dataset(tracks[1], small_settings, jobs=0, progress=False)


@pytest.fixture(scope="module")
def ray_run(ray_runtime, tracks, small_settings, tmp_path_factory):
    store = FeatureStore(str(tmp_path_factory.mktemp("ray-cache")), small_settings.to_dict())
    return store, extract_dataset_ray(tracks[1], small_settings, store=store, batch_size=2, progress=False)


def assert_same_features(got: dict, want: dict, *, rtol=1e-5):
    assert set(got) == set(want)
    for k, w in want.items():
        assert got[k].shape == w.shape, k
        if k == "starts":
            np.testing.assert_array_equal(got[k], w)
        else:  # float32 rounding: batch composition and thread counts differ between the engines
            np.testing.assert_allclose(got[k], w, rtol=rtol, atol=rtol * float(np.abs(w).max()), err_msg=k)


def test_features_equal_local_engine(ray_run, local_run, tracks):
    _, res = ray_run
    assert res.computed == 3 and res.cached == 0
    assert sorted(res.features) == sorted(tracks[0]) == sorted(local_run.features)
    for p in tracks[0]:
        assert set(res.features[p]) == {"original", "harmonic", "percussive", "starts", "mfcc"}
        assert res.features[p]["original"].shape[0] == 2  # max_windows=2 of small_settings
        assert_same_features(res.features[p], local_run.features[p])


def test_bad_files_are_failures_with_reasons(ray_run, local_run, tracks):
    _, res = ray_run
    bad, missing = tracks[1][3], tracks[1][4]
    assert sorted(res.failures) == sorted(local_run.failures)
    reasons = dict(res.failures)
    assert set(reasons) == {bad, missing}
    assert reasons[missing] == "no such file"
    assert reasons[bad].startswith("not a readable audio file")


def test_second_run_served_from_shared_cache(ray_run, tracks, small_settings):
    store, first = ray_run
    for p in tracks[0]:  # the actors wrote each track under its content digest
        assert_same_features(store.get(content_digest(p)), first.features[p], rtol=2e-3)  # float16 in the store
    again = extract_dataset_ray(tracks[0], small_settings, store=store, progress=False)
    assert (again.computed, again.cached, again.failures) == (0, 3, [])
    for p in tracks[0]:  # exactly the stored (float16-rounded) numbers: nothing was recomputed
        for k, v in store.get(content_digest(p)).items():
            np.testing.assert_array_equal(again.features[p][k], v)
    local = extract_dataset(tracks[0], small_settings, store=store, jobs=0, progress=False)
    assert (local.computed, local.cached) == (0, 3)  # the local engine reads what the cluster wrote


def test_parquet_output_and_resume(ray_runtime, tracks, local_run, small_settings, tmp_path):
    out = tmp_path / "features.parquet"
    res = extract_dataset_ray(tracks[1], small_settings, out_parquet=str(out), keep_features=False, progress=False)
    assert (res.computed, res.cached, res.features) == (3, 0, {})
    assert sorted(res.failures) == sorted(local_run.failures)
    table = pq.read_table(out)
    assert tuple(table.column_names) == PARQUET_COLUMNS
    rows = table.to_pylist()
    assert len(rows) == 3 * (3 * 2 + 1)  # 3 tracks × (3 views × 2 windows + the MFCC vector)
    for p in tracks[0]:
        want = local_run.features[p]
        mine = [r for r in rows if r["path"] == p]
        assert {r["track_id"] for r in mine} == {content_digest(p)}
        for r in mine:
            if r["view"] == "mfcc":
                assert r["window"] is None and r["start"] is None
                np.testing.assert_allclose(r["vector"], want["mfcc"], rtol=1e-5, atol=1e-4)
            else:
                assert r["start"] == pytest.approx(float(want["starts"][r["window"]]))
                np.testing.assert_allclose(r["vector"], want[r["view"]][r["window"]], rtol=1e-5,
                                           atol=1e-5 * float(np.abs(want[r["view"]]).max()))
    back = read_parquet_features(str(out))
    for p in tracks[0]:
        assert_same_features(back[content_digest(p)], local_run.features[p])
    again = extract_dataset_ray(tracks[0], small_settings, out_parquet=str(out), progress=False)
    assert (again.computed, again.cached) == (0, 3)  # tracks already in the folder are skipped
    for p in tracks[0]:
        assert_same_features(again.features[p], local_run.features[p])


def test_parameter_errors_are_one_sentence(ray_runtime, tracks, small_settings, tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an integer > 0"):
        extract_dataset_ray(tracks[0], small_settings, batch_size=0)
    with pytest.raises(ValueError, match=r"concurrency \(min, max\) needs min <= max"):
        extract_dataset_ray(tracks[0], small_settings, concurrency=(3, 1))
    with pytest.raises(ValueError, match="not both"):
        extract_dataset_ray(tracks[0], small_settings, store=FeatureStore(str(tmp_path), {}), out_parquet="x.parquet")
    # A GPU request on a cluster without GPUs fails at once instead of waiting for one forever.
    with pytest.raises(ValueError, match="has 0 GPUs"):
        extract_dataset_ray(tracks[0], small_settings, num_gpus=1, progress=False)


@pytest.fixture(scope="module")
def predict_paths(gtzan_root, tracks, tmp_path_factory):
    """Two held-out tracks, a 45 s classical→metal file (two segments) and the bad file."""
    d = tmp_path_factory.mktemp("ray-predict")
    a, _ = sf.read(genre_paths(gtzan_root, "classical")[6], dtype="float32")
    b, _ = sf.read(genre_paths(gtzan_root, "metal")[6], dtype="float32")
    # 8-bit: poorer than the model's training audio, so its answer carries a warning through Ray too.
    sf.write(d / "two genres.wav", np.concatenate([a[: 30 * SR], b[: 15 * SR]]), SR, subtype="PCM_U8")
    return [genre_paths(gtzan_root, "classical")[6], genre_paths(gtzan_root, "hiphop")[6], str(d / "two genres.wav"),
            tracks[1][3]]


@pytest.fixture(scope="module")
def local_predictions(model_file, predict_paths):
    return load_model(model_file).predict_many(predict_paths, progress=False, timeline=True)


def assert_same_predictions(got, want):
    assert [p.path for p in got] == [p.path for p in want]
    for g, w in zip(got, want):
        assert (g.genre, g.views, g.duration, g.warnings) == (w.genre, w.views, w.duration, w.warnings)
        assert g.probabilities == pytest.approx(w.probabilities, abs=1e-5)
        assert len(g.segments) == len(w.segments)
        for gs, ws in zip(g.segments, w.segments):
            assert gs[:3] == ws[:3] and gs[3] == pytest.approx(ws[3], abs=1e-5)


def test_predict_on_ray_equals_local(ray_runtime, model_file, predict_paths, local_predictions):
    preds, failures = predict_files_ray(model_file, predict_paths, timeline=True, progress=False)
    want, want_failures = local_predictions
    assert len(preds) == 3 and [p.genre for p in preds[:2]] == ["classical", "hiphop"]
    assert len(preds[2].segments) == 2  # the two-genre file: one answer per 30 s segment
    assert preds[2].low_confidence and not preds[0].low_confidence
    assert_same_predictions(preds, want)
    assert failures == want_failures and failures[0][0] == predict_paths[3]


def test_cli_joins_running_cluster(ray_runtime, model_file, predict_paths, local_predictions, tracks, tmp_path):
    """`--engine ray --address HOST:PORT`: the CLI in another process joins this module's cluster."""
    manifest = tmp_path / "two.csv"
    manifest.write_text(f"path,label\n{tracks[0][0]},blues\n{tracks[1][3]},blues\n")
    out = tmp_path / "cli.parquet"
    proc = run_cli("extract", manifest, "--engine", "ray", "--address", ray_runtime, "--out", out, "--quiet",
                   timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "features for 1/2 tracks (1 computed, 0 from cache)" in proc.stdout
    assert f"{tracks[1][3]}: not a readable audio file" in proc.stderr
    assert set(pq.read_table(out, columns=["track_id"]).column(0).to_pylist()) == {content_digest(tracks[0][0])}
    # one held-out track and the bad file, through one prediction actor
    proc = run_cli("predict", predict_paths[0], predict_paths[3], "--model", model_file, "--engine", "ray",
                   "--address", ray_runtime, "--actors", 1, "--format", "json", "--timeline", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    want, want_failures = local_predictions
    (d,) = doc["predictions"]
    assert d["path"] == want[0].path and d["genre"] == want[0].genre == "classical"
    assert d["probabilities"] == pytest.approx(want[0].probabilities, abs=1e-5)
    assert [(f["path"], f["reason"]) for f in doc["failures"]] == want_failures


@pytest.mark.parametrize("command", ["extract", "predict"])
def test_without_ray_one_line_says_how_to_install(command, model_file, tracks, tmp_path):
    args = (["extract", tracks[0][0], "--out", str(tmp_path / "f.parquet")] if command == "extract"
            else ["predict", tracks[0][0], "--model", str(model_file)])
    code = ("import sys; sys.modules['ray'] = None  # what a Python without Ray sees\n"
            "from genrevision.cli import main\n"
            f"sys.exit(main({args + ['--engine', 'ray']!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "genrevision: error: the Ray engine needs Ray (ray is not installed): pip install 'genrevision[ray]'"]


def test_job_that_cannot_start_fails_in_one_line(ray_runtime, tracks, small_settings):
    """A CNN actor that cannot load its backbone stops the job with the cause, not Ray's remote traceback."""
    broken = small_settings.with_(backbone="timm:no_such_network")
    with pytest.raises(RuntimeError, match=r"^the Ray job failed: .*no_such_network") as info:
        extract_dataset_ray(tracks[0][:1], broken, progress=False)
    assert "\n" not in str(info.value)
