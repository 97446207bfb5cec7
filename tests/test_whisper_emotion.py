"""The emotion head on Whisper encoder frames: loading, shapes, calibration, exact fast-tier explanations,
``train --arch whisper`` / ``evaluate`` on a few actors, several manifests, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config
from pipeline.training.whisper_head import (
    HeadRecipe,
    expected_calibration_error,
    fit_head,
    fit_temperature,
    nll,
    speaker_centred,
)
from pipeline.types import BASE_EMOTIONS, ModelUnavailableError
from pipeline.whisper_emotion import WhisperHeadConfig, WhisperHeadModel, softmax
from tests.fixtures_datasets import manifest_emotions, six_count
from tests.fixtures_whisper import _require_packaged


def _subset(source: Path, out: Path, actors: set[int]) -> Path:
    with open(source / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["actor"]) in actors]
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def _clip(ravdess_dir: Path, emotion: str = "angry") -> np.ndarray:
    from pipeline.audio import decode_audio

    with open(ravdess_dir / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["emotion"] == emotion and (ravdess_dir / r["path"]).is_file())
    return decode_audio(ravdess_dir / row["path"]).samples


@pytest.fixture(scope="module")
def head_config(fw_config):
    _require_packaged("base")
    return fw_config


@pytest.fixture(scope="module")
def shipped(head_config):
    from pipeline.emotion import load_emotion_model

    return load_emotion_model("whisper-head", head_config)


# ----------------------------------------------------------------------------------- the shipped model

def test_the_shipped_head_loads_by_its_id_and_gives_six_calibrated_probabilities(shipped, ravdess_dir):
    from pipeline.model_resolution import resolve_emotion_spec

    assert resolve_emotion_spec("whisper-head") == "whisper-head"
    assert isinstance(shipped, WhisperHeadModel) and shipped.trained
    assert shipped.labels == BASE_EMOTIONS and shipped.name == "whisper-head"
    assert shipped.cfg.temperature > 0 and shipped.cfg.temperature != 1.0  # fitted on held-out speakers
    x = _clip(ravdess_dir)
    frames = shipped.frame_features(x)
    assert frames.shape == (len(x) // 320, 2 * shipped.cfg.dim)  # one 1024-d vector per 20 ms
    p = shipped.predict_proba([x, x[: len(x) // 2]])
    assert p.shape == (2, 6) and np.allclose(p.sum(1), 1.0)
    assert np.allclose(p[0], shipped.head_proba(frames.mean(0, keepdims=True))[0])


def test_config_selects_the_whisper_head(head_config):
    from dataclasses import replace

    from pipeline.emotion import load_emotion_model

    model = load_emotion_model(None, replace(head_config, emotion_model="whisper-head"))
    assert isinstance(model, WhisperHeadModel)


def test_fast_tier_shapley_values_of_the_whisper_head_sum_to_f_all_minus_f_none(shipped, ravdess_dir):
    from pipeline.explain import explain_chunk
    from pipeline.explain_fast import silence_pooled

    x = _clip(ravdess_dir)
    exp = explain_chunk(shipped, x, config=Config(), tier="fast", target_label="anger")
    total = sum(s.value for s in exp.shap_segments)
    assert total == pytest.approx(exp.shap_full_value - exp.shap_base_value, abs=1e-9)
    assert exp.shap_full_value == pytest.approx(shipped.predict_proba([x])[0][0], rel=1e-6)
    assert exp.shap_base_value == pytest.approx(shipped.head_proba(silence_pooled(shipped)[None])[0][0], rel=1e-6)


# ---------------------------------------------------------------------------- head math (no encoder)

def _toy_model(pooling: str, rng) -> WhisperHeadModel:
    dim = 8
    cfg = WhisperHeadConfig(encoder="toy", pooling=pooling, dim=dim, temperature=1.7)
    s = cfg.stat_dim
    proj = rng.normal(size=(40, dim))
    return WhisperHeadModel(cfg, rng.normal(size=(6, s)), rng.normal(size=6), rng.normal(size=s),
                            rng.uniform(0.5, 2.0, size=s), encoder=lambda sig: np.tanh(
                                np.asarray(sig[: len(sig) // 40 * 40]).reshape(-1, 40) @ proj), trained=False)


def test_mean_pooling_head_is_affine_so_pooled_shortcuts_are_exact_even_with_a_speaker_offset():
    rng = np.random.default_rng(0)
    model = _toy_model("mean", rng)
    pooled = rng.normal(size=(5, 8))
    offset = rng.normal(size=8)
    for m in (model, model.for_speaker(offset)):
        w, b, rest = m.head_affine()
        assert np.allclose(rest(pooled @ w.T + b), m.head_proba(pooled), atol=1e-12)
    assert model.speaker_offset is None  # the shared model is untouched
    assert np.allclose(model.for_speaker(offset).head_proba(pooled + offset), model.head_proba(pooled))
    assert _toy_model("meanstd", rng).head_affine() is None


def test_meanstd_pooling_gives_the_standard_deviation_of_the_frames():
    rng = np.random.default_rng(1)
    model = _toy_model("meanstd", rng)
    x = rng.normal(size=16000).astype(np.float32)
    frames = model.frame_features(x)
    h = frames[:, :8]
    from pipeline.whisper_emotion import pooled_stats

    stats = pooled_stats(frames.mean(0, keepdims=True), "meanstd", 8)[0]
    assert np.allclose(stats[:8], h.mean(0), atol=1e-6)
    assert np.allclose(stats[8:], h.std(0), atol=1e-3)


def test_temperature_scaling_undoes_overconfidence_and_lowers_nll_and_ece():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20000, 6)) * 1.5
    y = np.array([rng.choice(6, p=p) for p in softmax(logits)])
    over = 3.0 * logits  # an overconfident model: same ranking, logits three times too large
    t = fit_temperature(over, y)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(softmax(over / t), y) < nll(softmax(over), y) - 0.1
    assert expected_calibration_error(softmax(over / t), y) < 0.02 < expected_calibration_error(softmax(over), y)


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    proba = np.array([[0.9, 0.1]] * 10 + [[0.3, 0.7]] * 10)
    y = np.array([0] * 10 + [0] * 5 + [1] * 5)  # 100% right at 0.9, 50% right at 0.7
    assert expected_calibration_error(proba, y) == pytest.approx(0.5 * 0.1 + 0.5 * 0.2)


def test_fit_head_chooses_c_and_temperature_on_held_out_training_speakers_only():
    rng = np.random.default_rng(3)
    n_spk, per = 6, 30
    spk = np.repeat([str(i) for i in range(n_spk)], per)
    y = np.tile(np.arange(6), n_spk * per // 6)
    voice = rng.normal(size=(n_spk, 10)) * 3  # speaker identity, large
    stats = rng.normal(size=(len(y), 10)) + np.eye(6, 10)[y] * 2.0 + voice[np.repeat(np.arange(n_spk), per)]
    fit = fit_head(stats, y, spk, list(BASE_EMOTIONS), HeadRecipe(c_grid=(0.01, 1.0), inner_groups=3))
    assert set(fit.inner["uar_by_c"]) == {"0.01", "1.0"} and fit.c in (0.01, 1.0)
    assert len(fit.inner["groups"]) == 3 and sorted(sum(fit.inner["groups"], [])) == sorted(set(spk))
    assert fit.inner["nll_calibrated"] <= fit.inner["nll_raw"] + 1e-9
    centred = speaker_centred(stats, spk)
    for s in set(spk):
        assert np.allclose(centred[spk == s].mean(0), stats.mean(0))


# ------------------------------------------------------------------------------ train / evaluate CLI

@pytest.fixture(scope="module")
def cli_env(head_config, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("EMOTIVOICE_WHISPER_DIR", head_config.whisper_dir)
    yield tmp_path_factory.mktemp("whisper_head")
    mp.undo()


def test_train_and_evaluate_commands_with_arch_whisper_on_a_few_actors(ravdess_dir, cli_env, capsys):
    from flows.cli import main

    tmp = cli_env
    train_m = _subset(ravdess_dir, tmp / "train.csv", {1, 2, 3})
    test_m = _subset(ravdess_dir, tmp / "test.csv", {4})
    out = tmp / "model"
    rc = main(["train", "--arch", "whisper", "--data", str(ravdess_dir), "--manifest", str(train_m),
               "--out", str(out), "--map-label", "calm=neutral", "--cache-dir", str(tmp / "cache")])
    assert rc == 0
    printed = capsys.readouterr().out
    counts = manifest_emotions(train_m)
    assert f"trained whisper model on {six_count(counts) + counts['calm']} clips of 3 speakers" in printed
    doc = json.loads((out / "config.json").read_text())
    assert doc["arch"] == "whisper-head" and doc["config"]["temperature"] > 0
    assert set(doc["inner_cv"]["uar_by_c"]) == {str(c) for c in HeadRecipe().c_grid}

    rc = main(["evaluate", "--model", str(out), "--data", str(ravdess_dir), "--manifest", str(test_m), "--json",
               "--cache-dir", str(tmp / "cache")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == six_count(manifest_emotions(test_m))
    assert result["model"] == str(out.resolve())
    assert 0.0 <= result["uar"] <= 1.0 and sum(map(sum, result["confusion"])) == result["n"]


def test_train_accepts_several_manifests_and_keeps_their_speakers_apart(ravdess_dir, cli_env, head_config):
    from pipeline.training import train

    tmp = cli_env
    a = _subset(ravdess_dir, tmp / "corpus_a.csv", {1, 2})
    b = _subset(ravdess_dir, tmp / "corpus_b.csv", {3})
    res = train([ravdess_dir], [a, b], None, arch="whisper", cache_dir=tmp / "cache", progress=False,
                config=head_config)
    assert res.speakers == ["corpus_a:1", "corpus_a:2", "corpus_b:3"]
    assert res.n_clips == six_count(manifest_emotions(a)) + six_count(manifest_emotions(b))


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / 16000)
    return 10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-20)


def test_test_channels_sound_like_their_names_and_are_the_same_every_time(ravdess_dir):
    from pipeline.audio import decode_audio
    from pipeline.training.augment import augment, channel

    x = decode_audio(next(iter(sorted(ravdess_dir.glob("Actor_01/*.flac"))))).samples
    phone = channel(x, "telephone")
    assert phone.shape == x.shape and np.array_equal(phone, channel(x, "telephone"))
    # the narrowband channel keeps speech's 300-3400 Hz and loses what is above 4 kHz
    assert _band_db(phone, 4500, 8000) < _band_db(x, 4500, 8000) - 15
    assert abs(_band_db(phone, 800, 3000) - _band_db(x, 800, 3000)) < 3
    noisy = channel(x, "noise10")
    snr = 10 * np.log10(np.mean(x ** 2) / np.mean((noisy - x) ** 2))
    assert 9.0 < snr < 11.0
    assert np.array_equal(augment(x, 7), augment(x, 7)) and not np.array_equal(augment(x, 7), augment(x, 8))
    with pytest.raises(ValueError, match="unknown channel 'radio'"):
        channel(x, "radio")


def test_train_with_augment_records_it_and_learns_from_the_copies(ravdess_dir, cli_env, head_config):
    from pipeline.training import train
    from pipeline.training.whisper_head import HeadRecipe

    tmp = cli_env
    m = _subset(ravdess_dir, tmp / "two.csv", {1, 2})
    plain = train([ravdess_dir], [m], None, arch="whisper", cache_dir=tmp / "cache", progress=False,
                  config=head_config)
    aug = train([ravdess_dir], [m], tmp / "aug", arch="whisper", cache_dir=tmp / "cache", progress=False,
                config=head_config, head_recipe=HeadRecipe(augment=1))
    assert aug.n_clips == plain.n_clips and aug.speakers == plain.speakers == ["1", "2"]
    doc = json.loads((tmp / "aug" / "config.json").read_text())
    assert doc["recipe"]["augment"] == 1
    assert not np.allclose(aug.model.weight, plain.model.weight)


def test_mismatched_data_and_manifest_counts_are_refused(tmp_path):
    from pipeline.training import pair_manifests

    with pytest.raises(ValueError, match="2 --manifest and 3 --data"):
        pair_manifests(["a", "b", "c"], ["m1.csv", "m2.csv"])


# ------------------------------------------------------------------------------------------ bad input

def test_a_whisper_head_folder_without_weights_is_reported_by_name(tmp_path, head_config):
    from pipeline.emotion import load_emotion_model

    (tmp_path / "config.json").write_text(json.dumps({"arch": "whisper-head", "config": {}}))
    with pytest.raises(ModelUnavailableError, match="lacks config.json or model.safetensors"):
        load_emotion_model(str(tmp_path), head_config)


def test_an_unknown_encoder_is_reported_by_name(tmp_path):
    from pipeline.whisper_emotion import encoder_folder

    with pytest.raises(ModelUnavailableError, match="neither a packaged Whisper size nor a CTranslate2 folder"):
        encoder_folder(str(tmp_path / "nope"), Config())


# ------------------------------------------------------------------------------- unseen actors (full)

def test_a_head_trained_on_six_actors_recognises_unseen_actors_well_above_chance(full_ravdess_dir, cli_env,
                                                                                 head_config):
    from pipeline.training import evaluate, train

    tmp = cli_env
    res = train(full_ravdess_dir, _subset(full_ravdess_dir, tmp / "six.csv", {1, 2, 3, 4, 5, 6}), tmp / "six",
                arch="whisper", label_map={"calm": "neutral"}, cache_dir=tmp / "cache", progress=False,
                config=head_config)
    m = evaluate(res.model, full_ravdess_dir, _subset(full_ravdess_dir, tmp / "unseen.csv", {7, 8}),
                 cache_dir=tmp / "cache")
    assert m.n == 88
    assert m.uar > 0.40  # chance is 1/6
