"""Explanations: what the Shapley/LIME math promises, both tiers, attention, faithfulness, feature view."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipeline.attention import attention_rollout, downsample_attention
from pipeline.config import Config
from pipeline.explain import (
    explain_batch,
    explain_chunk,
    explain_features,
    n_segments,
    segment_bounds,
)
from pipeline.explain_fast import silence_pooled
from pipeline.faithfulness import faithfulness_selected, faithfulness_summary
from pipeline.types import BASE_EMOTIONS, EmotionModel

SR = 16000


class ToyModel(EmotionModel):
    """Deterministic mean-pooled model: frame = [log energy, fixed random projection of log-mel].

    Anger's logit rises with the frame's log energy (loud = angry); the other labels read the spectrum.
    """

    name = "toy"
    frame_hop_s = 0.02
    trained = False

    def __init__(self, *, attention: bool = True, seed: int = 0):
        import librosa

        rng = np.random.default_rng(seed)
        self.mel = librosa.filters.mel(sr=SR, n_fft=400, n_mels=24)
        self.proj = rng.normal(size=(24, 7)) / 24
        self.w = rng.normal(size=(8, len(BASE_EMOTIONS))) * 0.2
        self.w[0] = 0.0
        self.w[0, 0] = 1.5
        self.b = np.zeros(len(BASE_EMOTIONS))
        self.b[0] = 14.0
        self.has_attention = attention
        self.forwards = 0
        self.seen: list[np.ndarray] = []

    def frame_features(self, signal):
        x = np.asarray(signal, np.float32)
        n = max(0, 1 + (len(x) - 400) // 320)
        if n == 0:
            return np.zeros((0, 8), np.float32)
        fr = np.lib.stride_tricks.sliding_window_view(x, 400)[::320][:n]
        spec = np.abs(np.fft.rfft(fr * np.hanning(400), axis=1)) ** 2
        logmel = np.log(spec @ self.mel.T + 1e-6)
        energy = np.log(np.mean(fr.astype(np.float64) ** 2, axis=1) + 1e-6)[:, None]
        return np.hstack([energy, logmel @ self.proj]).astype(np.float32)

    def head_proba(self, pooled):
        z = np.asarray(pooled, np.float64) @ self.w + self.b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, signals):
        self.forwards += len(signals)
        self.seen.extend(np.array(s) for s in signals)
        return super().predict_proba(signals)

    def attentions(self, signal):
        if not self.has_attention:
            return None
        f = self.frame_features(signal).astype(np.float64)
        f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-9
        maps = []
        for temp in (1.0, 4.0):
            s = temp * f @ f.T
            e = np.exp(s - s.max(axis=1, keepdims=True))
            maps.append(e / e.sum(axis=1, keepdims=True))
        return np.stack(maps)


def noise(seconds: float, amp: float = 0.01, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=int(seconds * SR)) * amp).astype(np.float32)


def with_loud_second(seconds: int, loud: int, seed: int = 0) -> np.ndarray:
    """Quiet noise with one loud second (the 'anger' evidence) at second ``loud``."""
    x = noise(seconds, seed=seed)
    x[loud * SR:(loud + 1) * SR] *= 30
    return x


@pytest.fixture
def config() -> Config:
    return Config(faithfulness_sample=0.0)


@pytest.fixture
def model() -> ToyModel:
    return ToyModel()


def total(exp) -> float:
    return sum(s.value for s in exp.shap_segments)


def brute_force_shapley(v, n: int) -> np.ndarray:
    """Shapley values from the definition: weighted marginal contributions over every coalition."""
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for s in itertools.combinations(others, size):
                phi[i] += w * (v(set(s) | {i}) - v(set(s)))
    return phi


# --------------------------------------------------------------------------------------------- segments

@pytest.mark.parametrize("seconds, expected", [(2.0, 5), (7.4, 7), (12.0, 12), (45.0, 20)])
def test_segment_count_follows_the_duration_between_the_configured_bounds(seconds, expected, config):
    assert n_segments(seconds, config) == expected
    bounds = segment_bounds(seconds, expected)
    assert bounds[0][0] == 0.0 and bounds[-1][1] == pytest.approx(seconds)
    assert all(b[0] == pytest.approx(a[1]) for a, b in zip(bounds, bounds[1:]))


def test_segments_never_outnumber_the_models_frames(model, config):
    exp = explain_chunk(model, noise(0.1), config=config, target_label="anger")  # 4 frames of 20 ms
    assert 1 <= len(exp.shap_segments) <= 4


# ------------------------------------------------------------------------------------------- fast tier

@pytest.mark.parametrize("seconds", [3, 10, 18])
def test_fast_tier_shapley_values_sum_to_f_all_minus_f_none(model, config, seconds):
    x = with_loud_second(seconds, 1)
    exp = explain_chunk(model, x, config=config, tier="fast", target_label="anger")
    assert total(exp) == pytest.approx(exp.shap_full_value - exp.shap_base_value, abs=1e-9)
    assert exp.shap_full_value == pytest.approx(model.predict_proba([x])[0][0], rel=1e-6)
    empty = model.head_proba(silence_pooled(model)[None])[0][0]
    assert exp.shap_base_value == pytest.approx(empty, rel=1e-6)


def test_fast_tier_values_are_the_exact_shapley_values_of_the_pooled_head_game(model, config):
    x = with_loud_second(3, 2)
    exp = explain_chunk(model, x, config=config, tier="fast", target_label="anger")
    frames = model.frame_features(x).astype(np.float64)
    n = len(exp.shap_segments)
    centres = (np.arange(len(frames)) + 0.5) * model.frame_hop_s
    seg = np.array([next(i for i, s in enumerate(exp.shap_segments) if c < s.end_s or i == n - 1)
                    for c in centres])

    def v(coalition: set) -> float:
        keep = np.isin(seg, list(coalition))
        pooled = frames[keep].mean(0) if keep.any() else silence_pooled(model)
        return float(model.head_proba(pooled[None])[0][0])

    expected = brute_force_shapley(v, n)
    assert np.abs(np.array([s.value for s in exp.shap_segments]) - expected).max() < 1e-6  # float32 head input


def test_the_loud_segment_gets_the_largest_anger_attribution_in_both_tiers_and_both_methods(model):
    config = Config(explain_budget=64, faithfulness_sample=0.0)
    x = with_loud_second(8, 5)
    for tier in ("fast", "full"):
        exp = explain_chunk(model, x, config=config, tier=tier, target_label="anger", faithfulness=False)
        shap_vals = [s.value for s in exp.shap_segments]
        lime_vals = [s.value for s in exp.lime_segments]
        assert int(np.argmax(shap_vals)) == 5, tier
        assert int(np.argmax(lime_vals)) == 5, tier
        assert exp.shap_segments[5].start_s == pytest.approx(5.0)


def test_default_target_is_the_models_top_label(model, config):
    x = noise(4, amp=0.05)
    exp = explain_chunk(model, x, config=config)
    assert exp.target_label == model.labels[int(np.argmax(model.predict_proba([x])[0]))]


def test_every_label_can_be_explained_and_attributions_over_all_labels_cancel(model, config):
    x = with_loud_second(5, 2)
    per_label = np.array([[s.value for s in explain_chunk(model, x, config=config, target_label=lab).shap_segments]
                          for lab in model.labels])
    # probabilities sum to 1 for every coalition, so each segment's Shapley values sum to 0 over labels
    assert per_label.sum(axis=0) == pytest.approx(np.zeros(per_label.shape[1]), abs=1e-9)
    assert np.abs(per_label).max() > 1e-3


def test_an_alias_of_a_canonical_emotion_is_accepted_as_target(model, config):
    assert explain_chunk(model, noise(3), config=config, target_label="angry").target_label == "anger"


def test_an_unknown_target_label_is_rejected_with_the_models_labels(model, config):
    with pytest.raises(ValueError, match="boredom.*anger"):
        explain_chunk(model, noise(3), config=config, target_label="boredom")


def test_an_unknown_tier_is_rejected(model, config):
    with pytest.raises(ValueError, match="tier"):
        explain_chunk(model, noise(3), config=config, tier="medium")


def test_fast_tier_with_precomputed_frames_runs_no_forward_pass(model, config):
    x = noise(6)
    silence_pooled(model)  # cached once per model
    frames = model.frame_features(x)
    model.forwards = 0
    explain_chunk(model, x, config=config, frames=frames, attention=False)
    assert model.forwards == 0


def test_lime_local_fit_score_is_stored(model, config):
    exp = explain_chunk(model, with_loud_second(6, 1), config=config, target_label="anger")
    assert exp.lime_score is not None and 0.0 < exp.lime_score <= 1.0
    assert "lime" in exp.lime_method


# ------------------------------------------------------------------------------------------- full tier

def test_full_tier_reruns_the_model_on_audio_with_segments_silenced_within_the_budget(model):
    cfg = Config(explain_budget=40, faithfulness_sample=0.0)
    x = with_loud_second(10, 3)
    model.forwards, model.seen = 0, []
    exp = explain_chunk(model, x, config=cfg, tier="full", target_label="anger", attention=False,
                        faithfulness=False)
    assert model.forwards <= 40
    n = len(exp.shap_segments)
    seg_len = len(x) // n
    masked = [s for s in model.seen if not np.array_equal(s, x)]
    assert masked, "no masked re-forward happened"
    for s in masked:
        assert len(s) == len(x)
        parts = [s[i * seg_len:(i + 1) * seg_len] for i in range(n)]
        # every segment is either untouched or digital silence
        assert all(np.all(p == 0) or np.array_equal(p, x[i * seg_len:(i + 1) * seg_len])
                   for i, p in enumerate(parts))
    assert total(exp) == pytest.approx(exp.shap_full_value - exp.shap_base_value, abs=1e-9)
    assert exp.shap_base_value == pytest.approx(model.predict_proba([np.zeros_like(x)])[0][0], rel=1e-6)
    assert "KernelSHAP" in exp.shap_method and exp.lime_score is not None


def test_full_tier_with_a_budget_covering_every_coalition_is_exact_shapley_of_input_masking(model):
    cfg = Config(explain_budget=64, faithfulness_sample=0.0)
    x = with_loud_second(3, 1)
    exp = explain_chunk(model, x, config=cfg, tier="full", target_label="anger", attention=False)
    bounds = [(s.start_s, s.end_s) for s in exp.shap_segments]

    def v(coalition: set) -> float:
        y = x.copy()
        for i, (a, b) in enumerate(bounds):
            if i not in coalition:
                y[int(round(a * SR)):int(round(b * SR))] = 0
        return float(model.predict_proba([y])[0][0])

    expected = brute_force_shapley(v, len(bounds))
    assert [s.value for s in exp.shap_segments] == pytest.approx(expected, abs=1e-6)
    assert "exact" in exp.shap_method


# ---------------------------------------------------------------------------------------- faithfulness

def test_faithfulness_deletes_top_segments_with_real_forward_passes_and_beats_random(model):
    cfg = Config(faithfulness_top_k=3)
    x = with_loud_second(8, 6)
    model.forwards = 0
    exp = explain_chunk(model, x, config=cfg, tier="fast", target_label="anger", faithfulness=True,
                        attention=False)
    f = exp.faithfulness
    assert f is not None and f["k"] == 3
    assert model.forwards == f["forward_passes"] > 0
    assert f["aopc_top"] > f["aopc_random"]
    assert f["top_is_most_harmful"] == 1.0
    assert -1.0 <= f["rank_agreement"] <= 1.0


def test_full_tier_always_checks_faithfulness(model):
    exp = explain_chunk(model, with_loud_second(5, 2), config=Config(explain_budget=32, faithfulness_sample=0.0),
                        tier="full", attention=False)
    assert exp.faithfulness is not None


def test_fast_tier_checks_a_deterministic_share_of_chunks():
    cfg = Config(faithfulness_sample=0.25)
    picked = [faithfulness_selected(cfg, "fast", i) for i in range(400)]
    assert 0.15 < np.mean(picked) < 0.35
    assert picked == [faithfulness_selected(cfg, "fast", i) for i in range(400)]
    assert not any(faithfulness_selected(Config(faithfulness_sample=0.0), "fast", i) for i in range(50))
    assert all(faithfulness_selected(Config(faithfulness_sample=0.0), "full", i) for i in range(5))
    # one-chunk files (chunk index 0 each) are sampled at the same rate when the file name is the key
    firsts = [faithfulness_selected(cfg, "fast", 0, f"file{j}.wav") for j in range(400)]
    assert 0.15 < np.mean(firsts) < 0.35


def test_faithfulness_summary_reports_how_often_the_top_segment_hurts_most(model):
    cfg = Config()
    exps = [explain_chunk(model, with_loud_second(6, i % 6, seed=i), config=cfg, target_label="anger",
                          faithfulness=True, attention=False) for i in range(4)]
    summary = faithfulness_summary(exps + [None])
    assert summary.chunks == 4
    assert summary.top_is_most_harmful_rate == 1.0
    assert summary.chance_rate == pytest.approx(1 / 6)
    assert summary.aopc_top_mean > summary.aopc_random_mean


# ------------------------------------------------------------------------------------------- attention

def test_attention_maps_are_per_layer_downsampled_distributions_with_a_rollout(model, config):
    exp = explain_chunk(model, noise(6), config=config)
    assert exp.attention.shape == (2, 32, 32)
    assert exp.attention_rollout.shape == (32, 32)
    assert exp.attention.sum(axis=-1) == pytest.approx(np.ones((2, 32)), abs=1e-4)
    assert exp.attention_rollout.sum(axis=-1) == pytest.approx(np.ones(32), abs=1e-4)


def test_a_model_without_attention_says_so_plainly(config):
    exp = explain_chunk(ToyModel(attention=False), noise(3), config=config)
    assert exp.attention is None and exp.attention_rollout is None
    assert "has no attention" in exp.attention_note


def test_rollout_of_attention_that_stays_on_itself_is_the_identity_and_downsampling_averages_blocks():
    eye = np.stack([np.eye(6)] * 3)
    assert attention_rollout(eye) == pytest.approx(np.eye(6))
    uniform = np.full((6, 6), 1 / 6)
    assert downsample_attention(uniform, 3) == pytest.approx(np.full((3, 3), 1 / 3))


@pytest.mark.parametrize("t, size", [(499, 32), (37, 8), (5, 32)])
def test_the_downsampled_rollout_equals_downsampling_the_full_rollout(t, size):
    from pipeline.attention import downsampled_rollout

    logits = np.random.default_rng(t).normal(size=(4, t, t)) * 3
    maps = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = downsample_attention(attention_rollout(maps), size)
    np.testing.assert_allclose(downsampled_rollout(maps, size), expected, atol=2e-5)


def test_explanations_hold_openblas_to_one_thread_in_the_main_thread_only_and_restore_it():
    import threading

    from threadpoolctl import threadpool_info

    from pipeline.blas import one_blas_thread

    def openblas_threads() -> list[int]:
        return [d["num_threads"] for d in threadpool_info() if d["internal_api"] == "openblas"]

    before = openblas_threads()
    if not before or max(before) < 2:
        pytest.skip("numpy's BLAS here is not a multi-threaded OpenBLAS")
    nested = one_blas_thread(lambda: (openblas_threads(), one_blas_thread(openblas_threads)(), openblas_threads()))
    assert nested() == ([1] * len(before),) * 3  # the inner call's exit keeps the outer call's limit
    assert openblas_threads() == before
    seen: list = []
    worker = threading.Thread(target=lambda: seen.append(one_blas_thread(openblas_threads)()))
    worker.start(), worker.join()
    assert seen == [before]  # worker threads (Prefect tasks, Streamlit, the live worker) are left alone
    assert openblas_threads() == before


def test_the_streaming_reducer_gives_the_downsampled_layers_and_rollout_of_the_full_maps():
    from pipeline.attention import AttentionReducer

    logits = np.random.default_rng(3).normal(size=(3, 101, 101)) * 3
    maps = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    reducer = AttentionReducer(16)
    for a in maps:
        reducer(a)
    layers, rollout = reducer.result()
    np.testing.assert_allclose(layers, downsample_attention(maps, 16), atol=1e-6)
    np.testing.assert_allclose(rollout, downsample_attention(attention_rollout(maps), 16), atol=2e-5)
    assert "3 layers" in reducer.note() and "101 frames downsampled to 16" in reducer.note()


# ------------------------------------------------------------------------------------------ robustness

@pytest.mark.parametrize("x", [np.zeros(0, np.float32), np.zeros(SR * 2, np.float32), noise(0.03), noise(0.01)],
                         ids=["empty", "silence", "one-frame", "shorter-than-a-frame"])
def test_degenerate_chunks_are_explained_without_an_exception(model, config, x):
    for tier in ("fast", "full"):
        exp = explain_chunk(model, x, config=config, tier=tier)
        assert exp.tier == tier
        if exp.shap_segments:
            assert total(exp) == pytest.approx(exp.shap_full_value - exp.shap_base_value, abs=1e-9)
        else:
            assert "not computed" in exp.shap_method


# --------------------------------------------------------------------------------- acoustic features

def test_feature_attributions_need_enough_chunks_and_say_why_when_they_are_missing(model, config):
    fx = explain_features(model, [noise(3), noise(3, seed=1)], config=config)
    assert fx.values == [{}, {}]
    assert "too few chunks" in fx.method and fx.reason


def test_feature_attributions_find_the_loudness_the_model_listens_to(model, config):
    rng = np.random.default_rng(3)
    chunks = []
    for i in range(8):
        x = noise(6, amp=float(rng.uniform(0.005, 0.05)), seed=i)
        x *= np.repeat(rng.uniform(0.3, 3.0, size=6), SR).astype(np.float32)  # loudness varies per second
        chunks.append(x)
    fx = explain_features(model, chunks, config=config, target_labels=["anger"] * 8)
    assert fx.n_chunks == 8 and fx.r2_by_label["anger"] > 0.5
    loudest = int(np.argmax([np.sqrt(np.mean(c**2)) for c in chunks]))
    quietest = int(np.argmin([np.sqrt(np.mean(c**2)) for c in chunks]))
    for c, sign in ((loudest, 1), (quietest, -1)):
        vals = fx.values[c]
        assert max(vals, key=lambda k: abs(vals[k])) == "rms_energy"
        assert sign * vals["rms_energy"] > 0
    assert "R² on held-out chunks" in fx.method and "pitch_mean_hz" in fx.method  # unvoiced: left out
    for vals, value, base in zip(fx.values, fx.surrogate_value, fx.surrogate_base):
        # Shapley values of the (linear) surrogate add up to its prediction minus its batch mean
        assert sum(vals.values()) == pytest.approx(value - base, abs=1e-9)


def test_explain_batch_attaches_feature_values_method_and_fidelity(model, config):
    chunks = [noise(5, amp=a, seed=i) for i, a in enumerate((0.005, 0.01, 0.02, 0.04, 0.08))]
    exps = explain_batch(model, chunks, config=config, target_label="anger")
    assert len(exps) == 5
    for e in exps:
        assert e.shap_features_method is not None
        assert e.surrogate_r2 is not None
        if e.surrogate_r2 > 0:
            assert "rms_energy" in e.shap_features


# ------------------------------------------------------------------------------------------ tiny HuBERT

def test_tiny_hubert_gets_both_tiers_attention_and_faithfulness(tiny_hubert_dir):
    from pipeline.emotion import load_emotion_model

    cfg = Config(explain_budget=40, faithfulness_sample=1.0, attention_size=16)
    hubert = load_emotion_model(str(tiny_hubert_dir), cfg)
    x = noise(6, amp=0.05)
    x[2 * SR:3 * SR] = 0.3 * np.sin(2 * np.pi * 180 * np.arange(SR) / SR)
    proba = hubert.predict_proba([x])[0]
    for tier in ("fast", "full"):
        exp = explain_chunk(hubert, x, config=cfg, tier=tier)
        assert exp.target_label == hubert.labels[int(np.argmax(proba))]
        assert exp.shap_full_value == pytest.approx(float(proba.max()), abs=1e-4)
        assert total(exp) == pytest.approx(exp.shap_full_value - exp.shap_base_value, abs=1e-5)
        assert exp.attention.shape == (2, 16, 16) and exp.attention_rollout.shape == (16, 16)
        assert exp.faithfulness is not None and exp.lime_score is not None


def test_full_tier_on_a_small_budget_stays_close_to_exact_for_a_model_with_local_frames(model):
    """The control variate (silence frames in the pooled head) absorbs most of KernelSHAP's sampling error."""
    x = with_loud_second(8, 5)
    exact = explain_chunk(model, x, config=Config(explain_budget=256), tier="full", target_label="anger",
                          faithfulness=False, attention=False)
    cheap = explain_chunk(model, x, config=Config(explain_budget=24), tier="full", target_label="anger",
                          faithfulness=False, attention=False)
    assert "exact" in exact.shap_method and "control variate" in cheap.shap_method
    assert [s.value for s in cheap.shap_segments] == pytest.approx([s.value for s in exact.shap_segments], abs=0.01)
