"""Cost of explanations on a 10 s chunk with full-size HuBERT: plain analysis vs fast tier vs full tier.

``python -m bench.explain_cost [--quick] [--seconds 10] [--budget N] [--threads 2] [--quantize int8|none]
[--faithfulness-chunks N]``

The model is the seed architecture (HubertForSpeechClassification) with the full-size HuBERT-base config
(``HubertConfig()`` defaults) and random weights, built directly (no download) and run through
``pipeline.emotion.HFEmotionModel`` exactly as analysis does (int8 dynamic quantisation, the CPU default;
``--quantize none`` for fp32). Speed does not depend on the weights.

Measured in one run, on the same chunk (real speech: the first seconds of jfk.flac):

- plain: ``model.predict_proba([chunk])`` — the analysis' one forward pass (median of repeats);
- fast tier: what it adds to the analysis when the analysis hands over its frames — segment Shapley
  values + LIME (``explain_chunk(frames=...)``), the per-chunk share of the acoustic-feature surrogate
  (``explain_features`` over a file of chunks, frames and feature tracks reused), and, separately,
  attention maps (what taking them from the analysis' own forward pass adds:
  ``frames_and_reduced_attention`` — capturing attention, each layer downsampled and rolled out as the
  pass makes it — minus ``frame_features``, median of paired runs) and the amortised
  faithfulness check (its cost times ``config.faithfulness_sample``);
- full tier: ``explain_chunk(tier='full')`` with ``config.explain_budget`` re-forwards (or ``--budget``).

Ratios are printed against plain. Targets: fast tier <= 5 % of plain; full tier <= 20 s on 2 cores.
Then the fast tier's trust check: over a few chunks, how often its top segment is the one whose
silencing (a real re-forward) hurts the target probability most (``faithfulness_summary``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "datasets" / "speech"
SR = 16000


def build_model(seed: int = 0):
    """Full-size HuBERT-base seed model with random weights, wrapped as the analysis wraps it."""
    import torch
    from transformers import HubertConfig, Wav2Vec2FeatureExtractor

    from pipeline.emotion import SEED_LABELS, HFEmotionModel, HubertForSpeechClassification

    torch.manual_seed(seed)
    cfg = HubertConfig(pooling_mode="mean", id2label=dict(enumerate(SEED_LABELS)),
                       label2id={lab: i for i, lab in enumerate(SEED_LABELS)})
    model = HubertForSpeechClassification(cfg).eval()
    with torch.no_grad():  # a random head gives near-uniform outputs; widen it so attributions are visible
        for name, p in model.classifier.named_parameters():
            if name.endswith("weight"):
                p.normal_(0.0, 0.5)
    return HFEmotionModel(model, Wav2Vec2FeatureExtractor(), name="hubert-base (random weights)", trained=False)


def load_speech(name: str) -> np.ndarray:
    """A file of the shared speech set at 16 kHz mono; synthetic noise if the set is missing."""
    path = SPEECH / name
    try:
        from pipeline.audio import decode_audio

        return decode_audio(path).samples
    except Exception as exc:
        print(f"(could not read {path}: {exc}; using noise)")
        return (np.random.default_rng(0).normal(size=10 * SR) * 0.05).astype(np.float32)


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="budget 32, 2 faithfulness chunks, 2 repeats")
    parser.add_argument("--seconds", type=float, default=10.0, help="chunk length (s)")
    parser.add_argument("--budget", type=int, default=None, help="full-tier model evaluations "
                        "(default: config.explain_budget)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the cheap measurements")
    parser.add_argument("--faithfulness-chunks", type=int, default=None,
                        help="chunks for the fast tier's trust check (default 5; 0 skips it)")
    parser.add_argument("--skip-full", action="store_true", help="do not run the full tier")
    parser.add_argument("--quantize", choices=("int8", "none"), default="int8",
                        help="int8 dynamic quantisation (the CPU default of analysis) or none (fp32)")
    args = parser.parse_args(argv)

    import logging

    import torch

    from pipeline.config import load_config
    from pipeline.attention import frames_and_reduced_attention
    from pipeline.explain import explain_chunk, explain_features
    from pipeline.faithfulness import deletion_faithfulness, faithfulness_summary
    from pipeline.features import feature_tracks

    logging.getLogger("pipeline").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    config = load_config()
    budget = args.budget or (32 if args.quick else config.explain_budget)
    config = config.replace(explain_budget=budget)
    repeats = args.repeats or (2 if args.quick else 3)
    n_faith = args.faithfulness_chunks if args.faithfulness_chunks is not None else (2 if args.quick else 5)

    model = build_model()
    if args.quantize == "int8":
        from pipeline.emotion import quantize_int8

        model.quantized = "int8" if quantize_int8(model.model) else "none"
    jfk = load_speech("jfk.flac")
    x = jfk[: int(args.seconds * SR)]
    if x.size < args.seconds * SR:
        x = np.pad(x, (0, int(args.seconds * SR) - x.size))
    others = [load_speech(f"LJ001-000{i}.wav") for i in range(1, 5)]
    print(f"chunk: {x.size / SR:.1f} s of jfk.flac; HuBERT-base {'int8' if model.quantized == 'int8' else 'fp32'}, random weights; "
          f"{torch.get_num_threads()} torch threads; explain_budget {budget}")

    # warm-up: first-call allocations, shap / numba / sklearn imports
    model.predict_proba([x[:SR]])
    explain_chunk(model, x[: 3 * SR], config=config, faithfulness=False, attention=False)

    plain, proba = timed(lambda: model.predict_proba([x]), repeats)
    # the analysis' pass without and with attention maps (each layer's map reduced as the pass makes it,
    # as analysis does), interleaved so that drift hits both alike; the cost is the median paired difference
    enc_t, joint_t = [], []
    for _ in range(max(5, repeats)):
        t_enc, frames = timed(lambda: model.frame_features(x), 1)
        t_joint, _ = timed(lambda: frames_and_reduced_attention(model, [x], config.attention_size), 1)
        enc_t.append(t_enc)
        joint_t.append(t_joint)
    enc, joint = statistics.median(enc_t), statistics.median(joint_t)
    diffs = [j - e for j, e in zip(joint_t, enc_t)]
    att_s = max(0.0, statistics.median(diffs))
    att_q = statistics.quantiles(diffs, n=4) if len(diffs) >= 4 else [min(diffs), 0, max(diffs)]
    feat_s, tracks = timed(lambda: feature_tracks(x), 1)
    fast_s, fast_exp = timed(lambda: explain_chunk(model, x, config=config, frames=frames, faithfulness=False,
                                                   attention=False), repeats)
    # acoustic-feature surrogate over a "file" of 5 chunks, frames and tracks from the analysis
    chunks = [x] + others
    all_frames = [frames] + [model.frame_features(c) for c in others]
    all_tracks = [tracks] + [feature_tracks(c) for c in others]
    surr_s, fx = timed(lambda: explain_features(model, chunks, config=config, frames=all_frames,
                                                tracks=all_tracks), 1)
    surr_per_chunk = surr_s / len(chunks)
    n = len(fast_exp.shap_segments)
    bounds = [(s.start_s, s.end_s) for s in fast_exp.shap_segments]
    idx = list(model.labels).index(fast_exp.target_label)
    faith_s, faith = timed(lambda: deletion_faithfulness(
        model, x, bounds, np.array([s.value for s in fast_exp.shap_segments]), idx,
        k=config.faithfulness_top_k, batch_size=config.batch_size, full_prob=float(proba[0][idx])), 1)
    faith_amortised = faith_s * config.faithfulness_sample

    # The plain analysis of a chunk (``explain = "none"``) is the emotion forward pass plus the acoustic
    # feature tracks (and transcription when a Whisper model is present; left out here, which makes the
    # ratios below larger, not smaller).
    plain_total = plain + feat_s

    def pct(t: float) -> str:
        return f"{t:8.3f} s  {100 * t / plain_total:6.1f} % of plain ({100 * t / plain:5.1f} % of the forward)"

    print(f"\n{'step':58s} {'time':>10s}")
    print(f"{'emotion model: predict_proba (1 forward pass)':58s} {plain:8.3f} s")
    print(f"{'  (frame_features, the same pass returning frames)':58s} {enc:8.3f} s")
    print(f"{'acoustic feature tracks (analysis features stage)':58s} {feat_s:8.3f} s")
    print(f"{'plain analysis = forward + features (explain none)':58s} {plain_total:8.3f} s")
    print(f"{'fast: segment SHAP (' + str(n) + ' segments, exact) + LIME':58s} {pct(fast_s)}")
    print(f"{'fast: acoustic-feature surrogate, per chunk':58s} {pct(surr_per_chunk)}")
    fast_core = fast_s + surr_per_chunk
    print(f"{'fast tier: SHAP + LIME + feature view':58s} {pct(fast_core)}")
    print(f"{'  (frames + attention maps reduced in the same pass)':58s} {joint:8.3f} s")
    print(f"{'attention maps: extra of that pass (median paired difference)':58s} {pct(att_s)}")
    print(f"{'  (paired differences over ' + str(len(diffs)) + ' runs: quartiles)':58s} "
          f"{1000 * att_q[0]:.0f} / {1000 * att_q[-1]:.0f} ms")
    print(f"{'faithfulness check (' + str(int(faith['forward_passes'])) + ' re-forwards), when sampled':58s} "
          f"{pct(faith_s)}")
    print(f"{'  amortised at faithfulness_sample=' + str(config.faithfulness_sample):58s} {pct(faith_amortised)}")
    print(f"{'fast tier, everything, amortised':58s} {pct(fast_core + att_s + faith_amortised)}")
    print(f"feature surrogate: held-out R² by label "
          + ", ".join(f"{k} {v:.2f}" for k, v in fx.r2_by_label.items()) + f" ({fx.n_samples} segments)")

    full_s = None
    if not args.skip_full:
        full_s, full_exp = timed(lambda: explain_chunk(model, x, config=config, tier="full", faithfulness=False,
                                                       attention=False), 1)
        per_eval = full_s / budget
        fits = int(20.0 / per_eval) if per_eval > 0 else 0
        print(f"{'full tier (' + str(budget) + ' re-forwards, KernelSHAP + LIME)':58s} {pct(full_s)} "
              f"({full_s / plain:.0f}x plain)")
        print(f"  per evaluation {per_eval:.3f} s -> a 20 s full tier affords a budget of about {fits}")
        fv = np.array([s.value for s in fast_exp.shap_segments])
        uv = np.array([s.value for s in full_exp.shap_segments])
        if np.ptp(fv) > 0 and np.ptp(uv) > 0:
            from scipy.stats import spearmanr

            print(f"  fast vs full segment SHAP (label {fast_exp.target_label}): Spearman "
                  f"{spearmanr(fv, uv).statistic:.2f}; top segment fast {int(fv.argmax())}, full {int(uv.argmax())}")

    if n_faith:
        pool = [x] + others + [jfk[int(args.seconds * SR):]]
        exps = []
        for i, c in enumerate(pool[:n_faith]):
            if c.size < SR:
                continue
            exps.append(explain_chunk(model, c, config=config, seed=i, faithfulness=True, attention=False))
        s = faithfulness_summary(exps)
        print(f"\nfast-tier trust over {s.chunks} chunks: top segment = most harmful single deletion in "
              f"{100 * s.top_is_most_harmful_rate:.0f} % (chance {100 * s.chance_rate:.0f} %), top-k overlap "
              f"{s.topk_overlap_mean:.2f}, rank agreement {s.rank_agreement_mean:.2f}, AOPC top {s.aopc_top_mean:.3f} "
              f"vs random {s.aopc_random_mean:.3f}")

    everything = fast_core + att_s + faith_amortised
    with_att = fast_core + att_s

    def verdict(t: float) -> str:
        return f"{'met' if t <= 0.05 * plain_total else 'NOT met'} ({100 * t / plain_total:.1f} %)"

    print(f"\ntargets: fast tier <= 5 % of plain: SHAP + LIME + feature view {verdict(fast_core)}; "
          f"+ attention {verdict(with_att)}; + amortised faithfulness {verdict(everything)}")
    if full_s is not None:
        print(f"         full tier <= 20 s: {'met' if full_s <= 20 else 'NOT met'} ({full_s:.1f} s at budget {budget})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
