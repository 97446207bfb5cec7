"""Live tab latency: end of utterance -> result ready, p50 and p95, with the tiny and a full-size HuBERT.

Run: ``python -m bench.live_latency [--utterances 20] [--models tiny,full] [--threads 1,2] [--realtime]``

What is measured. RAVDESS clips (different actors, seeded choice) are streamed through a
``flows.live.LiveSession`` as the browser sends them (48 kHz mono pieces of 960 samples, resampled,
end-pointed), each followed by 0.8 s of silence; the next clip starts once the previous result is in,
so the worker is idle when an utterance closes (as in real time, whenever analysis is faster than
speech). Latency = the end-pointer's decision (``live_silence_ms`` after the speech ended) -> the
FileResult is ready, through the same worker thread and ``Analyzer.analyze_signal(live=True)`` (Whisper
off or as configured, fast explanations) the page uses. ``--realtime`` paces the frames at 20 ms instead
(slower; the same thing on an idle machine). The page's redraw adds up to ``REFRESH_S`` (0.25 s).

Baselines measured in the same run, on the same utterances and thread setting, so the figures are
ratios that transfer between machines:
* the utterance's own duration (latency / duration < 1 means faster than speech), and
* a bare ``model.predict_proba`` on the utterance (what the pipeline adds on top of one forward pass).

Models: ``tiny`` is the test fixture's 2-layer, 32-wide HuBERT; ``full`` is ``transformers.HubertConfig()``
(HuBERT-base size: 12 layers, 768 wide, 95 M parameters) with the seed head
(``pipeline.emotion.HubertForSpeechClassification``), random weights: same cost as the real checkpoint.

``--threads`` sets torch's CPU threads on the analysis worker thread (a per-thread setting).
Numbers of a run on this project's 2-core machine are in docs/live.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "datasets" / "ravdess"
FRAME = 960  # samples per WebRTC frame at 48 kHz


def build_random_hubert(out: Path, dims: dict | None = None, seed: int = 0) -> Path:
    """A seed-form HuBERT emotion checkpoint with random weights (flagged), saved with save_pretrained."""
    import torch
    from transformers import HubertConfig, Wav2Vec2FeatureExtractor

    from pipeline.emotion import RANDOM_INIT_FLAG, SEED_LABELS, HubertForSpeechClassification

    out.mkdir(parents=True, exist_ok=True)
    cfg = HubertConfig(**(dims or {}), id2label=dict(enumerate(SEED_LABELS)),
                       label2id={lab: i for i, lab in enumerate(SEED_LABELS)}, pooling_mode="mean")
    setattr(cfg, RANDOM_INIT_FLAG, True)
    torch.manual_seed(seed)
    HubertForSpeechClassification(cfg).save_pretrained(out)
    Wav2Vec2FeatureExtractor(return_attention_mask=False, do_normalize=True).save_pretrained(out)
    return out


def tiny_dims() -> dict:
    try:
        from tests.fixtures_models import TINY_HUBERT

        return dict(TINY_HUBERT)
    except ImportError:  # running without the tests folder
        return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                    conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                    classifier_proj_size=16)


def pick_clips(n: int, seed: int = 0) -> list[Path]:
    with open(RAVDESS / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = np.random.default_rng(seed)
    rows = [rows[i] for i in rng.permutation(len(rows))]
    seen: dict[str, int] = {}
    out = []
    for r in rows:  # spread over actors
        if seen.get(r["actor"], 0) <= len(out) // 18:
            seen[r["actor"]] = seen.get(r["actor"], 0) + 1
            out.append(RAVDESS / r["path"])
        if len(out) == n:
            break
    return out


def to_48k(path: Path) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    x, sr = sf.read(str(path), dtype="float32")
    return resample_poly(x, 48000 // np.gcd(sr, 48000), sr // np.gcd(sr, 48000)).astype(np.float32)


def run_one(model_dir: Path, clips: list[np.ndarray], *, threads: int, whisper: str, realtime: bool,
            quantize: str = "auto") -> dict:
    import torch

    from flows.live import LiveSession, warm_up
    from pipeline import SAMPLE_RATE, Config, get_analyzer

    config = Config().replace(emotion_model=str(model_dir), whisper_model=whisper, explain="fast",
                              device="cpu", quantize=quantize)
    analyzer = get_analyzer(config)  # the process-wide one the session's default analysis uses
    analyzer.model_info()  # load models outside the measurement
    warm_up(analyzer.analyze_signal, torch_threads=threads)  # first-use imports, as the page does

    # as the page runs it: emotions first; with Whisper, the words in a second step
    session = LiveSession(config, torch_threads=threads)
    silence = np.zeros(int(0.8 * 48000), dtype=np.float32)
    for x in clips:
        signal = np.concatenate([x, silence])
        for i in range(0, len(signal), FRAME):
            session.push(signal[i:i + FRAME], 48000)
            if realtime:
                time.sleep(FRAME / 48000)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the next clip starts once this one's result is in
            st = session.stats()
            if st.analysed + st.errors >= st.utterances and not st.busy and not st.waiting:
                break
            time.sleep(0.002)
    session.stop(timeout=120)
    results = session.results()
    audio = session.recording()
    if not results:
        raise RuntimeError(f"no utterance was analysed ({session.stats()})")
    lat = np.array([r.latency_s for r in results])
    words = np.array([r.transcript_latency_s for r in results if r.transcript_latency_s is not None])
    dur = np.array([r.utterance.duration_s for r in results])

    # baseline: a bare forward pass on the same utterances, on a thread with the worker's setting
    model = analyzer.emotion()
    bare: list[float] = []

    def forward_each() -> None:
        torch.set_num_threads(threads)
        for r in results:
            seg = audio[int(r.utterance.start_s * SAMPLE_RATE):int(r.utterance.end_s * SAMPLE_RATE)]
            t0 = time.perf_counter()
            model.predict_proba([seg])
            bare.append(time.perf_counter() - t0)

    th = threading.Thread(target=forward_each)
    th.start()
    th.join()
    bare = np.array(bare)
    stages: dict[str, float] = {}
    for r in results:
        for k, v in r.result.timings.items():
            stages[k] = stages.get(k, 0.0) + v / max(1, len(results))
    return {
        "utterances": len(results), "threads": threads, "whisper": whisper,
        "latency_p50_s": float(np.percentile(lat, 50)), "latency_p95_s": float(np.percentile(lat, 95)),
        "duration_mean_s": float(dur.mean()),
        "latency_over_duration_p50": float(np.percentile(lat / dur, 50)),
        "latency_over_duration_p95": float(np.percentile(lat / dur, 95)),
        "bare_predict_p50_s": float(np.percentile(bare, 50)),
        "latency_over_bare_p50": float(np.percentile(lat / bare, 50)),
        "stage_mean_s": {k: round(v, 4) for k, v in stages.items()},
        "dropped_overload": session.stats().dropped_overload,
        "quantized": getattr(model, "quantized", "none"),
        "transcript_latency_p50_s": float(np.percentile(words, 50)) if len(words) else None,
        "transcript_latency_p95_s": float(np.percentile(words, 95)) if len(words) else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.live_latency", description=__doc__.split("\n")[0])
    ap.add_argument("--utterances", type=int, default=20)
    ap.add_argument("--models", default="tiny,full", help="comma list of tiny, full")
    ap.add_argument("--threads", default="1,2", help="comma list of torch threads for the worker")
    ap.add_argument("--whisper", default="none", help="'none' (the emotion path) or a Whisper name/path")
    ap.add_argument("--realtime", action="store_true", help="pace frames at 20 ms (real time)")
    ap.add_argument("--quantize", default="auto", choices=("auto", "int8", "none"),
                    help="emotion model quantisation (auto: int8 on a CPU, the analysis default)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("pipeline.emotion", "pipeline.analyze", "flows.live", "pipeline.stream", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import torch

    clips = [to_48k(p) for p in pick_clips(args.utterances)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"live latency bench: {len(clips)} RAVDESS utterances, {os.cpu_count()} CPUs, torch "
          f"{torch.__version__}, load average {load:.1f} at start, whisper={args.whisper}, "
          f"{'real-time pacing' if args.realtime else 'unpaced pushes'}")
    out: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="emotivoice-bench-live-") as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            if name not in ("tiny", "full"):
                ap.error(f"--models: unknown model {name!r} (tiny, full)")
            model_dir = build_random_hubert(Path(tmp) / name, tiny_dims() if name == "tiny" else None)
            for threads in [int(t) for t in args.threads.split(",")]:
                fig = run_one(model_dir, clips, threads=threads, whisper=args.whisper, realtime=args.realtime,
                              quantize=args.quantize)
                out.setdefault(name, []).append(fig)
                words = ("" if fig["transcript_latency_p50_s"] is None else
                         f"  | words p50 {fig['transcript_latency_p50_s']:.3f} s p95 {fig['transcript_latency_p95_s']:.3f} s")
                print(f"{name:4s} {fig['quantized']:4s} threads={threads}: n={fig['utterances']:2d}  "
                      f"emotion latency p50 {fig['latency_p50_s']:.3f} s"
                      f"  p95 {fig['latency_p95_s']:.3f} s  | p95 / utterance duration "
                      f"{fig['latency_over_duration_p95']:.3f} (mean duration {fig['duration_mean_s']:.2f} s)"
                      f"  | p50 / bare predict_proba {fig['latency_over_bare_p50']:.2f}x "
                      f"(bare p50 {fig['bare_predict_p50_s']:.3f} s){words}  | stages {fig['stage_mean_s']}")
                sys.stdout.flush()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.1f} at end (2-core machine shared with other work: absolute seconds vary; "
          "the ratios are the comparable figures)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
