"""HuBERT-base emotion-model speed on CPU: fp32 vs dynamic int8 vs bf16, with top-class agreement.

``python -m bench.hubert_speed [--quick] [--clips N] [--threads N]``

The model is the seed architecture (HubertForSpeechClassification) with the full-size HuBERT-base config
(``HubertConfig()`` defaults: 12 layers, 768 wide, 512-channel conv front end) and random weights: speed
does not depend on the values. It runs through ``pipeline.emotion.HFEmotionModel`` exactly as analysis
does (one clip per forward pass: HuBERT-base takes no attention mask, so clips are never padded).

Speed: audio seconds processed per wall-clock second for each variant, and the ratio vs fp32 measured in
the same run. The clips are processed in rounds, each round timing every variant on the same few clips in
rotating order, so load from other processes is spread evenly over the variants.

Agreement: a random head would give near-equal logits, making top-class agreement meaningless, so the
head is a logistic-regression probe fitted on the fp32 pooled frame features of the clips (RAVDESS labels
mapped onto the six base emotions). Each variant's pooled features go through the same probe; we print
the fraction of clips whose top class equals fp32's, and the largest probability difference. Random
encoder weights lack the outliers of trained ones, so this is a lower bound on the quantisation error
real checkpoints see, not a proof; re-check with a real checkpoint when one is available.

Measured (2 shared cores of an Intel Xeon with AVX-512 VNNI/BF16 and AMX, torch 2.13 CPU, 2 torch
threads, 100 clips cut to 2 s = 200 s of audio, load average ~10 from other jobs, so absolute speeds
are low; the ratios are what count)::

    variant   audio-s/s  vs fp32  audio-s/CPU-s  vs fp32
    fp32           0.50    1.00x           1.46    1.00x
    int8           0.72    1.44x           2.00    1.37x
    bf16           0.51    1.02x           1.44    0.99x
     probe C  median margin  int8 agree  int8 max|dp|  bf16 agree  bf16 max|dp|
           1          0.982      100.0%        0.0166      100.0%        0.0025
        0.01          0.515      100.0%        0.0450      100.0%        0.0111
       0.001          0.079       99.0%        0.0109       99.0%        0.0020

Hence quantize='auto' uses int8 on CPU (``pipeline.model_resolution.AUTO_INT8_ON_CPU``). The run took 6.4 CPU-minutes
(about 3.5 minutes on 2 idle cores); ``--quick`` uses 20 clips.
"""

from __future__ import annotations

import argparse
import copy
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "datasets" / "ravdess"
SIX = {"neutral": "neutral", "happy": "happiness", "sad": "sadness", "angry": "anger", "fearful": "fear",
       "surprised": "surprise"}


def pick_clips(n: int, root: Path = RAVDESS) -> list[tuple[Path, str]]:
    """n clips spread over actors and the six emotions (calm/disgust skipped), deterministic."""
    with open(root / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["emotion"] in SIX]
    step = max(1, len(rows) // n)
    return [(root / r["path"], SIX[r["emotion"]]) for r in rows[::step][:n]]


def load_clip(path: Path) -> np.ndarray:
    import soundfile as sf

    samples, sr = sf.read(path, dtype="float32", always_2d=True)
    if sr != 16000:
        raise ValueError(f"{path}: expected 16 kHz, got {sr} Hz")
    return samples.mean(axis=1)


def centre(signal: np.ndarray, max_seconds: float) -> np.ndarray:
    """The central ``max_seconds`` of a 16 kHz signal (RAVDESS clips open and close with silence)."""
    keep = int(max_seconds * 16000)
    if keep <= 0 or signal.size <= keep:
        return signal
    start = (signal.size - keep) // 2
    return signal[start : start + keep]


def build_variants(seed: int = 0) -> dict:
    """fp32 / int8 / bf16 HFEmotionModel wrappers around one random full-size seed model."""
    import torch
    from transformers import HubertConfig, Wav2Vec2FeatureExtractor

    from pipeline.emotion import SEED_LABELS, HFEmotionModel, HubertForSpeechClassification, quantize_int8

    torch.manual_seed(seed)
    cfg = HubertConfig(pooling_mode="mean", id2label=dict(enumerate(SEED_LABELS)),
                       label2id={lab: i for i, lab in enumerate(SEED_LABELS)})
    base = HubertForSpeechClassification(cfg).eval()
    fe = Wav2Vec2FeatureExtractor()
    int8 = copy.deepcopy(base)
    if not quantize_int8(int8):
        int8 = None
    bf16 = copy.deepcopy(base).to(torch.bfloat16)
    variants = {"fp32": base, "int8": int8, "bf16": bf16}
    return {k: HFEmotionModel(m, fe, name=f"hubert-base-random-{k}", trained=False,
                              quantized="int8" if k == "int8" else "none")
            for k, m in variants.items() if m is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hubert_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 clips instead of 100")
    parser.add_argument("--clips", type=int, default=None, help="number of RAVDESS clips (default 100)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--round", type=int, default=5, help="clips per timing round")
    parser.add_argument("--max-seconds", type=float, default=2.0,
                        help="keep at most this much of each clip, centred (0: whole clips); keeps the run short")
    args = parser.parse_args(argv)
    import logging

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    logging.getLogger("pipeline.emotion").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.clips or (20 if args.quick else 100)
    picked = pick_clips(n)
    signals = [centre(load_clip(p), args.max_seconds) for p, _ in picked]
    labels = [lab for _, lab in picked]
    audio_s = sum(s.size for s in signals) / 16000
    print(f"HuBERT-base (random weights), {len(signals)} RAVDESS clips, {audio_s:.1f} s of audio, "
          f"{torch.get_num_threads()} torch threads")

    models = build_variants()
    names = list(models)
    for m in models.values():  # warm-up: first-call allocations and kernel selection
        m.frame_features(signals[0][:16000])
    pooled = {k: np.zeros((len(signals), 768), dtype=np.float32) for k in names}
    seconds = dict.fromkeys(names, 0.0)
    cpu_seconds = dict.fromkeys(names, 0.0)
    for r, start in enumerate(range(0, len(signals), args.round)):
        idx = range(start, min(start + args.round, len(signals)))
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t0, c0 = time.perf_counter(), time.process_time()
            for i in idx:
                pooled[k][i] = models[k].frame_features(signals[i]).mean(axis=0)
            seconds[k] += time.perf_counter() - t0
            cpu_seconds[k] += time.process_time() - c0

    print(f"{'variant':8s} {'audio-s/s':>10s} {'vs fp32':>8s} {'audio-s/CPU-s':>14s} {'vs fp32':>8s}")
    for k in names:
        speed, cpu_speed = audio_s / seconds[k], audio_s / cpu_seconds[k]
        print(f"{k:8s} {speed:10.2f} {speed * seconds['fp32'] / audio_s:7.2f}x {cpu_speed:14.2f} "
              f"{cpu_speed * cpu_seconds['fp32'] / audio_s:7.2f}x", flush=True)

    # Agreement through fitted probes of decreasing strength (smaller C: softer, smaller margins).
    scaler = StandardScaler().fit(pooled["fp32"])
    ref = scaler.transform(pooled["fp32"])
    print(f"{'probe C':>8s} {'median margin':>14s} " + " ".join(f"{k + ' agree':>11s} {k + ' max|dp|':>13s}"
                                                             for k in names if k != "fp32"))
    for c in (1.0, 0.01, 0.001):
        probe = LogisticRegression(max_iter=5000, C=c).fit(ref, labels)
        proba = {k: probe.predict_proba(scaler.transform(v.astype(np.float64))) for k, v in pooled.items()}
        top2 = np.sort(proba["fp32"], axis=1)[:, -2:]
        row = f"{c:8g} {np.median(top2[:, 1] - top2[:, 0]):14.3f} "
        for k in names:
            if k == "fp32":
                continue
            agree = float((proba[k].argmax(1) == proba["fp32"].argmax(1)).mean())
            row += f"{agree:11.1%} {float(np.abs(proba[k] - proba['fp32']).max()):13.4f} "
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
