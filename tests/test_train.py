"""Training and evaluation: manifests, speaker-independent splits, metrics, the compact and HuBERT paths."""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from flows.train_cli import add_evaluate_arguments, add_train_arguments, run_evaluate, run_train
from pipeline.training import (
    TrainSettings,
    compute_metrics,
    evaluate,
    plan_validation,
    read_manifest,
    train,
)
from pipeline.types import BASE_EMOTIONS
from tests.fixtures_datasets import manifest_emotions, six_count

#: Two epochs, small crops: seconds on a shared CPU.
FAST = TrainSettings(epochs=2, patience=None, crop_s=(1.0, 1.5), batch_size=16, members=("tdnn", "stats"),
                     stats_views=1, stats_steps=100)


def _subset_manifest(source: Path, out: Path, actors: set[int], *, columns=None) -> Path:
    """A copy of a RAVDESS manifest (``source``, or a folder's manifest.csv) restricted to some actors
    (optionally renaming columns). How many clips each actor has depends on the corpus in use (the full
    one, or the subset in tests/data): tests count them with ``manifest_emotions``."""
    with open(source if source.suffix == ".csv" else source / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["actor"]) in actors]
    columns = columns or {}
    with open(out, "w", newline="") as fh:
        names = [columns.get(c, c) for c in rows[0]]
        w = csv.writer(fh)
        w.writerow(names)
        for r in rows:
            w.writerow(list(r.values()))
    return out


@pytest.fixture(scope="module")
def trained_compact(ravdess_dir, tmp_path_factory):
    """A compact model trained for 2 epochs on actors 1-3 (actor 4 held out for evaluation)."""
    tmp = tmp_path_factory.mktemp("compact_train")
    manifest = _subset_manifest(ravdess_dir, tmp / "train.csv", {1, 2, 3})
    out = tmp / "model"
    result = train(ravdess_dir, manifest, out, settings=FAST, cache_dir=tmp / "cache", progress=False)
    return result, out


@pytest.fixture(scope="module")
def heldout_manifest(ravdess_dir, tmp_path_factory):
    return _subset_manifest(ravdess_dir, tmp_path_factory.mktemp("heldout") / "actor4.csv", {4})


def test_ravdess_manifest_falls_back_to_emotion_and_actor_columns_and_counts_skipped_labels(ravdess_dir,
                                                                                          ravdess_manifest_full):
    data = read_manifest(ravdess_dir, ravdess_manifest_full)
    assert (data.label_column, data.speaker_column) == ("emotion", "actor")
    assert data.skipped == {"calm": 144, "disgust": 144}
    assert len(data) == 1080 - 288
    assert set(data.labels) == set(BASE_EMOTIONS)
    assert len(data.speaker_set()) == 18


def test_label_and_speaker_columns_can_be_named(ravdess_dir, ravdess_manifest_full, tmp_path):
    manifest = _subset_manifest(ravdess_manifest_full, tmp_path / "m.csv", {5},
                                columns={"emotion": "mood", "actor": "who"})
    data = read_manifest(ravdess_dir, manifest, label_column="mood", speaker_column="who")
    assert set(data.speakers) == {"5"}
    assert len(data) == 44  # 4 neutral + 8 of each other emotion


def test_a_manifest_without_a_label_column_is_refused_naming_its_columns(tmp_path):
    (tmp_path / "m.csv").write_text("path,who\na.wav,1\n")
    with pytest.raises(ValueError, match="columns: path, who"):
        read_manifest(tmp_path, tmp_path / "m.csv")


def test_label_map_can_fold_calm_into_neutral(ravdess_dir, ravdess_manifest_full):
    data = read_manifest(ravdess_dir, ravdess_manifest_full, label_map={"calm": "neutral"})
    assert data.labels.count("neutral") == 72 + 144
    assert data.skipped == {"disgust": 144}


@pytest.mark.parametrize("n_members", [1, 4, 6])
def test_validation_never_splits_a_speaker_and_an_ensemble_learns_from_every_speaker(ravdess_dir, ravdess_manifest_full,
                                                                                      n_members):
    data = read_manifest(ravdess_dir, ravdess_manifest_full)
    plans = plan_validation(data, "auto", n_members, seed=0, val_group_size=3)
    assert len(plans) == n_members
    trained_on = set()
    for val in plans:
        train_spk = set(data.speaker_set()) - set(val)
        assert len(val) == 3 and not (set(val) & train_spk)
        trained_on |= train_spk
    if n_members > 1:
        assert trained_on == set(data.speaker_set())
    if n_members == 6:  # six groups of three: every actor is held out by exactly one member
        assert sorted(s for val in plans for s in val) == sorted(data.speaker_set())


def test_unknown_validation_speakers_are_refused(ravdess_dir, ravdess_manifest_full):
    data = read_manifest(ravdess_dir, ravdess_manifest_full)
    with pytest.raises(ValueError, match="not in the manifest"):
        plan_validation(data, ["99"], 1, seed=0)


def test_metrics_of_a_known_confusion():
    y_true = ["anger"] * 4 + ["sadness"] * 2
    y_pred = ["anger", "anger", "anger", "sadness", "sadness", "anger"]
    m = compute_metrics(y_true, y_pred, ["anger", "sadness"])
    assert m.confusion == [[3, 1], [1, 1]]
    assert m.wa == pytest.approx(4 / 6)
    assert m.uar == pytest.approx((3 / 4 + 1 / 2) / 2)
    f1_anger = 2 * 0.75 * 0.75 / 1.5
    f1_sad = 2 * 0.5 * 0.5 / 1.0
    assert m.macro_f1 == pytest.approx((f1_anger + f1_sad) / 2)
    assert m.per_class["fear"] is None


def test_training_saves_the_best_checkpoint_with_config_labels_and_metrics(trained_compact, ravdess_dir):
    result, out = trained_compact
    counts = manifest_emotions(ravdess_dir / "manifest.csv", {1, 2, 3})
    assert (out / "model.safetensors").is_file()
    doc = json.loads((out / "config.json").read_text())
    assert doc["labels"] == list(BASE_EMOTIONS)
    assert doc["label2id"]["anger"] == 0
    assert len(doc["training"]["members"]) == 2
    assert result.skipped == {"calm": counts["calm"], "disgust": counts["disgust"]}
    for m in result.members:
        assert 1 <= m.best_epoch <= m.epochs_run
        assert m.history[m.best_epoch - 1].val_uar == m.best_val_uar
        assert not set(m.val_speakers) & set(m.train_speakers)


def test_evaluation_on_a_held_out_actor_is_well_formed(trained_compact, ravdess_dir, heldout_manifest):
    from pipeline.compact import load_compact

    _, out = trained_compact
    counts = manifest_emotions(heldout_manifest)
    m = evaluate(load_compact(out), ravdess_dir, heldout_manifest)
    assert m.n == six_count(counts)
    assert np.asarray(m.confusion).sum() == m.n
    assert np.asarray(m.confusion).shape == (6, 6)
    for v in (m.uar, m.wa, m.macro_f1):
        assert 0.0 <= v <= 1.0
    assert set(m.per_class) == set(BASE_EMOTIONS)
    assert all(0.0 <= v <= 1.0 for v in m.per_class.values())
    assert m.skipped == {"calm (not one of the six)": counts["calm"],
                         "disgust (not one of the six)": counts["disgust"]}


def test_evaluate_command_prints_json_figures_and_saves_a_plot(trained_compact, ravdess_dir, heldout_manifest,
                                                              tmp_path, capsys):
    _, out = trained_compact
    parser = add_evaluate_arguments(argparse.ArgumentParser())
    png = tmp_path / "confusion.png"
    args = parser.parse_args(["--model", str(out), "--data", str(ravdess_dir), "--manifest", str(heldout_manifest),
                              "--json", "--plot", str(png)])
    assert run_evaluate(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"uar", "wa", "macro_f1", "per_class", "confusion", "n"} <= set(doc)
    assert sum(map(sum, doc["confusion"])) == doc["n"] == six_count(manifest_emotions(heldout_manifest))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_reports_classes_the_model_lacks(tiny_superb_dir, ravdess_dir, heldout_manifest):
    from pipeline.config import Config
    from pipeline.training import load_model_for_eval

    model = load_model_for_eval(str(tiny_superb_dir), Config(device="cpu", quantize="none"))
    counts = manifest_emotions(heldout_manifest)
    m = evaluate(model, ravdess_dir, heldout_manifest)
    assert set(m.absent) == {"fear", "surprise"}
    assert m.per_class["fear"] is None
    assert m.n == six_count(counts) - counts["fearful"] - counts["surprised"]  # fear and surprise are not scored
    assert m.skipped["fear (absent from model)"] == counts["fearful"]


def test_train_command_trains_and_saves_a_compact_model(ravdess_dir, tmp_path, capsys):
    manifest = _subset_manifest(ravdess_dir, tmp_path / "m.csv", {2, 3})
    counts = manifest_emotions(manifest)
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data", str(ravdess_dir), "--manifest", str(manifest), "--out",
                              str(tmp_path / "model"), "--epochs", "1", "--members", "1", "--val-speakers", "3",
                              "--cache-dir", str(tmp_path / "cache")])
    assert run_train(args) == 0
    printed = capsys.readouterr().out
    assert f"trained compact model on {six_count(counts)} clips of 2 speakers" in printed
    assert f"calm ({counts['calm']})" in printed
    doc = json.loads((tmp_path / "model" / "config.json").read_text())
    assert doc["training"]["members"][0]["val_speakers"] == ["3"]


def _tiny_hubert(request, tmp_path) -> Path:
    try:
        return request.getfixturevalue("tiny_hubert_dir")
    except pytest.FixtureLookupError:  # fixtures_models not available: build one here
        from transformers import HubertConfig, Wav2Vec2FeatureExtractor

        from pipeline.emotion import HubertForSpeechClassification

        cfg = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                           conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                           pooling_mode="mean", num_labels=6)
        HubertForSpeechClassification(cfg).save_pretrained(tmp_path / "tiny")
        Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / "tiny")
        return tmp_path / "tiny"


def test_hubert_fine_tuning_lowers_the_training_loss(request, ravdess_dir, tmp_path):
    manifest = _subset_manifest(ravdess_dir, tmp_path / "m.csv", {9, 10})
    with open(manifest) as fh:  # a few clips: 4 of each class per actor is plenty for a tiny model
        rows = list(csv.DictReader(fh))
    keep = [r for r in rows if r["emotion"] in {"angry", "sad"} and r["intensity"] == "strong"]
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    base = _tiny_hubert(request, tmp_path)
    settings = replace(TrainSettings(), epochs=4, patience=None, hubert_lr=3e-3, max_len_s=1.0, batch_size=8)
    result = train(ravdess_dir, manifest, tmp_path / "hubert", arch="hubert", base=str(base), settings=settings,
                   val_speakers="10", cache_dir=tmp_path / "cache", progress=False)
    losses = [h.train_loss for h in result.members[0].history]
    assert losses[-1] < losses[0]
    assert result.labels == ["anger", "sadness"]
    assert (tmp_path / "hubert" / "training.json").is_file()


def test_a_fine_tuned_hubert_loads_as_an_emotion_model_for_analysis(request, ravdess_dir, tmp_path):
    from pipeline.config import Config
    from pipeline.training import load_model_for_eval

    manifest = _subset_manifest(ravdess_dir, tmp_path / "m.csv", {3, 4})
    base = _tiny_hubert(request, tmp_path)
    settings = replace(TrainSettings(), epochs=1, patience=None, max_len_s=1.0, batch_size=8)
    train(ravdess_dir, manifest, tmp_path / "hubert", arch="hubert", base=str(base), settings=settings,
          val_speakers="4", cache_dir=tmp_path / "cache", progress=False)
    model = load_model_for_eval(str(tmp_path / "hubert"), Config(device="cpu", quantize="none"))
    assert set(model.labels) == set(BASE_EMOTIONS)
    m = evaluate(model, ravdess_dir, manifest, speakers=["4"], cache_dir=tmp_path / "cache")
    n = six_count(manifest_emotions(manifest, {4}))
    assert m.n == n and sum(map(sum, m.confusion)) == n


def test_hubert_needs_a_base_checkpoint(ravdess_dir, tmp_path):
    manifest = _subset_manifest(ravdess_dir, tmp_path / "m.csv", {1, 2})
    with pytest.raises(ValueError, match="--base"):
        train(ravdess_dir, manifest, tmp_path / "out", arch="hubert", base=None,
              settings=replace(TrainSettings(), epochs=1), cache_dir=tmp_path / "cache", progress=False)


def test_an_unavailable_training_device_is_refused_before_any_decoding(tmp_path, capsys):
    from flows.cli import main

    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,speaker\nmissing.wav,angry,1\n")
    rc = main(["train", "--data", str(tmp_path), "--manifest", str(manifest), "--out", str(tmp_path / "out"),
               "--device", "cuda:7"])
    assert rc == 2
    assert "training device 'cuda:7' is not available here" in capsys.readouterr().err
