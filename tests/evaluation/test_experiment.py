"""genrevision.evaluate on real GTZAN tracks: honest reports, resumable folds, the CLI on the same API."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from testkit import run_cli, small_recipe  # the tracks and feature cache of test_model's model

from genrevision import EvaluationResult, evaluate
from genrevision.evaluation.dataset import load_dataset
from genrevision.evaluation.reports import parse_confusion_text

GENRES = ("classical", "metal", "hiphop")
PER_GENRE = 6  # 2 folds leave 3 training tracks per genre: enough for the inner cross-validation
FOLDS, REPEATS = 2, 2


def _subset(gtzan_root):
    ds = load_dataset(str(gtzan_root / "genres"))
    pick = [i for g in GENRES for i in [j for j, lab in enumerate(ds.labels) if lab == g][:PER_GENRE]]
    return ds.subset(pick)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "feature-cache")  # shared with test_model's model


@pytest.fixture(scope="module")
def evaluated(gtzan_root, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    ds = _subset(gtzan_root)
    res = evaluate(ds, protocol="cv", recipes=(small_recipe(), "paper"), folds=FOLDS, repeats=REPEATS,
                   cache=cache, jobs=0, progress=False, out=out)
    return res, out, ds


def test_result_and_report(evaluated):
    res, out, ds = evaluated
    assert isinstance(res, EvaluationResult)
    n = len(ds)
    assert n == 3 * PER_GENRE and res.results["n_tracks"] == n
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == json.loads(res.to_json())
    # The keys tests and benchmarks read stay where they were.
    for key in ("default", "baseline_mfcc", "rows", "std", "recipes", "confusion", "ablation", "config"):
        assert key in on_disk
    assert set(on_disk["recipes"]) == {"default", "paper"}
    assert {"svm", "finetune"} <= set(on_disk["rows"])

    # Every confusion matrix counts each track once per repeat, over every test fold.
    assert len(on_disk["confusion"]) == 4
    for label, entry in on_disk["confusion"].items():
        m = np.asarray(entry["matrix"])
        assert m.sum() == n * REPEATS, label
        assert entry["n_predictions"] == n * REPEATS
        assert f"{n} tracks × {REPEATS} repeats = {n * REPEATS} test predictions" in entry["caption"]
        assert np.asarray(m).sum(axis=1).tolist() == [PER_GENRE * REPEATS] * 3
        txt = (out / f"confusion_{label.replace(' ', '_')}.txt").read_text()
        assert entry["caption"] in txt
        back, _ = parse_confusion_text(txt)
        np.testing.assert_array_equal(back, m)
    # The default's matrix agrees with its accuracy: the diagonal is the correct predictions.
    d = np.asarray(on_disk["confusion"]["default fused"]["matrix"])
    assert np.trace(d) / d.sum() == pytest.approx(on_disk["default"])

    # ± over folds, the 95 % interval over repeats; both recorded and shown.
    rec = on_disk["recipes"]["default"]
    folds_acc = np.asarray(rec["fused_fold_accuracies"])
    assert len(folds_acc) == FOLDS * REPEATS
    assert rec["fused"] == pytest.approx(folds_acc.mean()) and rec["fused_std"] == pytest.approx(folds_acc.std())
    repeat_means = folds_acc.reshape(REPEATS, FOLDS).mean(axis=1)
    assert rec["fused_repeat_means"] == pytest.approx(repeat_means.tolist())
    lo, hi = rec["fused_ci95"]
    half = 12.7062047 * repeat_means.std(ddof=1) / np.sqrt(2)  # t(0.975, 1 degree of freedom)
    assert lo == pytest.approx(max(0, repeat_means.mean() - half)) and hi == pytest.approx(min(1, repeat_means.mean() + half))
    assert res.ci95("default") == [lo, hi] and res.accuracy("default") == rec["fused"]

    # The config says what ran.
    cfg = on_disk["config"]
    assert (cfg["folds"], cfg["repeats"], cfg["n_folds_run"], cfg["protocol"]) == (FOLDS, REPEATS, 4, "cv")
    assert cfg["recipes"]["default"]["backbone"] == "efficientnet_lite2"
    assert cfg["recipes"]["paper"]["backbone"] == "efficientnet_lite0"
    assert cfg["versions"]["genrevision"] and cfg["versions"]["sklearn"]

    # The default joins the views: its "fused" row is its one row, listed once and said so.
    assert "fused" not in rec["rows"]["linear"] and rec["duplicates"]["linear"] == {"fused": "original+harmonic+percussive"}
    names = [a["name"] for a in on_disk["ablation"]]
    assert "default · linear · original+harmonic+percussive (= fused)" in names
    assert len(names) == len(set(names))

    md = (out / "tables.md").read_text(encoding="utf-8")
    assert "## Table I: paper recipe on efficientnet_lite0, RBF-SVM per view" in md
    assert "## Table III: paper recipe on efficientnet_lite0, retrained softmax layer" in md
    assert "mean ± std over 4 folds" in md and "95 % CI of the mean over 2 repeats" in md
    assert "### Table II: paper recipe (efficientnet_lite0)" in md
    assert "### default recipe (efficientnet_lite2)" in md
    assert "listed once" in md
    page = (out / "report.html").read_text(encoding="utf-8")
    assert f"{n} tracks × 2 repeats = {2 * n} test predictions" in page
    assert page.count("<img") == 4


def test_interrupted_evaluation_resumes(evaluated, cache, tmp_path):
    res, out, ds = evaluated
    work = tmp_path / "run"
    shutil.copytree(out, work)
    folds = sorted(os.listdir(work / "folds"))
    assert len(folds) == 3 * FOLDS * REPEATS  # default, paper, baseline: one file per fold
    for name in [f for f in folds if f.startswith("default-")][:3] + [f for f in folds if f.startswith("paper-")][:1]:
        os.unlink(work / "folds" / name)
    again = evaluate(ds, protocol="cv", recipes=(small_recipe(), "paper"), folds=FOLDS, repeats=REPEATS,
                     cache=cache, jobs=0, progress=False, out=work)
    fit = again.timings["fitting"]
    assert {k: v["folds_fitted"] for k, v in fit.items()} == {"default": 3, "paper": 1, "baseline": 0}
    assert fit["default"]["folds_loaded"] == 1
    for key in ("recipes", "rows", "std", "ci95", "confusion", "baseline_mfcc", "default", "ablation"):
        assert again.results[key] == res.results[key], key
    # Another seed is another set of folds: nothing is reused.
    other = evaluate(ds, protocol="cv", recipes=(small_recipe(),), folds=FOLDS, repeats=1, seed=1,
                     cache=cache, jobs=0, progress=False, out=work)
    assert other.timings["fitting"]["default"]["folds_loaded"] == 0


def test_resumed_evaluation_fits_nothing_cold_or_warm(evaluated, cache, tmp_path):
    # The MFCC vectors computed in a worker process (one BLAS thread, jobs=1, no cache) differ by
    # rounding from those of the first run (this process's threads, or the cache it filled); a rerun
    # still loads every finished fold, the baseline's included, whichever way its features came.
    res, out, ds = evaluated
    work = tmp_path / "run"
    shutil.copytree(out, work)
    for feature_cache, jobs in ((None, 1), (cache, 0)):
        again = evaluate(ds, protocol="cv", recipes=(small_recipe(),), folds=FOLDS, repeats=REPEATS,
                         cache=feature_cache, jobs=jobs, progress=False, out=work)
        fit = again.timings["fitting"]
        assert {k: v["folds_fitted"] for k, v in fit.items()} == {"default": 0, "baseline": 0}, feature_cache
        assert {k: v["folds_loaded"] for k, v in fit.items()} == {"default": FOLDS * REPEATS,
                                                                   "baseline": FOLDS * REPEATS}
        assert again.results["baseline_mfcc"] == res.results["baseline_mfcc"]
        assert again.results["recipes"]["default"] == res.results["recipes"]["default"]


def test_cli_evaluate_runs_the_api(evaluated, cache, tmp_path):
    res, out, ds = evaluated
    work = tmp_path / "cli"
    shutil.copytree(out, work)
    manifest = tmp_path / "subset.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab in zip(ds.paths, ds.labels)))
    proc = run_cli("evaluate", manifest, "--recipe", "paper", "--no-paper-recipe", "--folds", FOLDS,
                   "--repeats", REPEATS, "--cache", cache, "--jobs", 0, "--quiet", "--out", work)
    assert proc.returncode == 0, proc.stderr
    # Same paths, labels, folds and recipe: the CLI loads the API run's finished folds.
    assert f"resumed: {2 * FOLDS * REPEATS} finished folds loaded" in proc.stdout
    assert "Table I: paper recipe on efficientnet_lite0" in proc.stdout
    assert "std over 4 folds" in proc.stdout and "95 % CI of the mean" in proc.stdout
    again = json.loads((work / "results.json").read_text())
    assert again["recipes"]["paper"] == json.loads(res.to_json())["recipes"]["paper"]
    assert again["baseline_mfcc"] == res.results["baseline_mfcc"]


def _artist_manifest(gtzan_root, ds, path):
    """A manifest of ``ds`` with the artist of every track from gtzan-mini's artists.csv."""
    import csv

    with open(gtzan_root / "artists.csv", newline="") as f:
        artist = {os.path.basename(r["path"]): r["group"] for r in csv.DictReader(f)}
    path.write_text("path,label,group\n" + "".join(f"{p},{lab},{artist[os.path.basename(p)]}\n"
                                                   for p, lab in zip(ds.paths, ds.labels)))
    return path


def test_group_protocol_names_the_one_artist_genre_and_scores_the_rest(evaluated, gtzan_root, cache, tmp_path):
    # classical.00000-05 are all JS Bach: not testable across artists; metal and hiphop (10 tracks each, by
    # 8 and 5 artists: enough for the nested artist-grouped searches of the paper recipe) are.
    full = load_dataset(str(gtzan_root / "genres"))
    pick = [i for g, n in (("classical", PER_GENRE), ("metal", 10), ("hiphop", 10))
            for i in [j for j, lab in enumerate(full.labels) if lab == g][:n]]
    manifest = _artist_manifest(gtzan_root, full.subset(pick), tmp_path / "artists.csv")
    with pytest.warns(UserWarning, match=r"not testable across artists: classical \(only JS Bach\)"):
        res = evaluate(str(manifest), protocol="group", recipes=(small_recipe(),), folds=2, repeats=1,
                       cache=cache, jobs=0, progress=False)
    groups = load_dataset(str(manifest)).groups
    y = np.asarray(load_dataset(str(manifest)).labels)
    for f in res.folds:
        assert not set(groups[f.train]) & set(groups[f.test])
        assert set(np.flatnonzero(y == "classical")) <= set(f.train)
    assert res.results["untested"] == [{"label": "classical", "group": "JS Bach", "tracks": PER_GENRE}]
    assert res.results["artist_disjoint"] and not res.results["optimistic"]
    assert res.results["n_scored_tracks"] == 20
    fused = res.results["confusion"]["default fused"]
    assert sum(map(sum, fused["matrix"])) == 20  # only metal and hiphop tracks were scored
    assert 0.0 <= res.accuracy("default") <= 1.0
    text = res.summary()
    assert text.startswith("protocol group: artist-disjoint")
    assert "not testable across artists: classical (only JS Bach)" in text
    # Random CV on the same tracks says what it is.
    assert "same artists on both sides: optimistic" in evaluated[0].summary()
    assert evaluated[0].results["optimistic"] and not evaluated[0].results["artist_disjoint"]
    # The CLI on the same manifest: one clear line, no crash.
    proc = run_cli("evaluate", manifest, "--protocol", "group", "--recipe", "paper", "--no-paper-recipe",
                   "--folds", 2, "--repeats", 1, "--cache", cache, "--jobs", 0, "--quiet", "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    assert "not testable across artists: classical (only JS Bach)" in proc.stdout


def test_parameter_errors(gtzan_root):
    ds = _subset(gtzan_root)
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate(ds, protocol="random", progress=False)
    with pytest.raises(ValueError, match="folds must be an integer >= 2"):
        evaluate(ds, folds=1, progress=False)
    with pytest.raises(ValueError, match="unknown recipe"):
        evaluate(ds, recipes=("nope",), progress=False)


def test_version_and_examples_in_help():
    from genrevision import __version__
    from genrevision.cli import build_parser

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"genrevision {__version__}"
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"extract", "evaluate", "train", "predict", "embed", "tag", "serve", "audit"}
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "example" in text and f"genrevision {name} " in text.split("example", 1)[1], name
    assert "(default: cv)" in sub.choices["evaluate"].format_help().replace("\n", " ").replace("  ", " ")


def test_fixed_fusion_of_joined_views_fits_no_out_of_fold_likelihoods(monkeypatch):
    # The default recipe (O+H+P joined, MFCC, 50/50) has no row that uses learned weights: its
    # folds fitted an inner cross-validation per view for nothing (80 % of a fold on 2000 clips).
    from dataclasses import replace

    from genrevision.evaluation.experiment import fold_rows
    from genrevision.learn import fusion
    from genrevision.learn.fusion import LateFusionClassifier
    from genrevision.recipes import get_recipe

    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["blues", "jazz", "rock"]), 12)
    X = rng.standard_normal((36, 10)) + np.searchsorted(["blues", "jazz", "rock"], y)[:, None] * 0.8
    views = (("original+harmonic+percussive", 0, 6), ("mfcc", 6, 10))
    recipe = replace(get_recipe("default"), pooling="mean")
    train, test = np.r_[0:8, 12:20, 24:32], np.r_[8:12, 20:24, 32:36]
    # What the fold's rows were before: learned fusion fitted, the recipe's uniform fusion predicted.
    before = LateFusionClassifier(views=views, estimator=recipe.make_head(), weights="learned").fit(X[train], y[train])
    expected = before.with_fusion("uniform", y[train]).predict_proba(X[test])

    def no_inner_cv(*args, **kwargs):
        raise AssertionError("out-of-fold likelihoods fitted for a recipe that does not use them")

    monkeypatch.setattr(fusion, "_out_of_fold_probas", no_inner_cv)
    rows, classes = fold_rows(recipe, X, views, y, train, test, head=recipe.head)
    assert set(rows) == {"original+harmonic+percussive", "mfcc", "fused"}
    np.testing.assert_allclose(rows["fused"], expected, rtol=0, atol=1e-12)
    # A recipe that learns its weights still gets them.
    monkeypatch.undo()
    learned, _ = fold_rows(replace(recipe, fusion_weights="learned"), X, views, y, train, test, head=recipe.head)
    assert learned["fused"].shape == expected.shape
    # Separate O/H/P views with the paper's fixed weights keep their learned and stacked rows.
    ohp = (("original", 0, 3), ("harmonic", 3, 6), ("percussive", 6, 10))
    paper, _ = fold_rows(replace(recipe, views="separate", fusion_weights=(0.5, 0.1, 0.4)), X, ohp, y, train, test,
                         head=recipe.head)
    assert {"original+harmonic+percussive (learned)", "original+harmonic+percussive (stacking)"} <= set(paper)
