"""Whole analysis of a conversation, warm: × real time with every default on, against plain emotions.

`python -m bench.full_analysis [--quick] [--seconds S] [--repeats N]`. The input is RAVDESS clips of
several actors (a conversation of 2–4 voices) and read speech joined with pauses, about ``--seconds`` long
(from ../shared/datasets, else tests/data). Three configurations run on the same signal, models loaded
before timing:

- ``emotions``: the baseline, the default emotion model only (no words, no speakers, no explanations);
- ``default``: what `emotivoice ingest` runs: VAD chunks, words (faster-whisper base on CPU), the default
  emotion model, speaker labels, acoustic features and the fast explanation tier (the chunks' speech packed
  for Whisper, greedy decoding);
- ``default, beam 5``: the default with Whisper's beam search at 5 (the default before greedy);
- ``default, no words``: the same without Whisper, to show what the words cost.

The issue's target: the whole analysis at least 10× real time on 2 cores. Each figure is printed with its
ratio to the baseline of the same run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _datasets() -> Path:
    shared = ROOT.parent / "shared" / "datasets"
    return shared if shared.is_dir() else ROOT / "tests" / "data"


def conversation(seconds: float) -> np.ndarray:
    """Clips of alternating actors and read speech, 0.6 s of silence between them, ~``seconds`` long."""
    import soundfile as sf

    from pipeline.audio import decode_audio

    data = _datasets()
    actors = sorted(p for p in (data / "ravdess").glob("Actor_*") if p.is_dir())[:4]
    pools = [sorted(a.glob("*.flac")) for a in actors]
    speech = sorted((data / "speech").glob("LJ*.wav"))
    gap = np.zeros(int(0.6 * 16000), dtype=np.float32)
    parts: list[np.ndarray] = []
    total, i = 0.0, 0
    while total < seconds:
        pool = pools[i % len(pools)]
        path = pool[(i // len(pools)) % len(pool)] if i % 5 else (speech[i % len(speech)] if speech else pool[0])
        x = decode_audio(path).samples if path.suffix != ".flac" else sf.read(str(path), dtype="float32")[0]
        parts += [x.astype(np.float32), gap]
        total += (len(x) + len(gap)) / 16000
        i += 1
    return np.concatenate(parts)


def _time(analyzer, samples: np.ndarray, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        analyzer.analyze_signal(samples, 16000, name="bench")
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.full_analysis")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipeline.analyze import Analyzer
    from pipeline.config import Config

    seconds = 20.0 if args.quick else args.seconds
    repeats = 1 if args.quick else args.repeats
    samples = conversation(seconds)
    dur = len(samples) / 16000
    base = Config()
    runs = {
        "emotions": base.replace(whisper_model="none", speakers="none", explain="none"),
        "default": base,
        "default, beam 5": base.replace(beam_size=5),
        "default, no words": base.replace(whisper_model="none"),
    }
    print(f"signal: {dur:.1f} s of joined clips; best of {repeats}; torch/CT2 threads as configured")
    print(f"{'configuration':<20} {'wall s':>8} {'x real time':>12} {'vs emotions':>12}  models")
    ref = None
    for name, cfg in runs.items():
        analyzer = Analyzer(cfg)
        warm = analyzer.analyze_signal(samples[: 16000 * 4], 16000, name="warm-up")  # load every model
        wall = _time(analyzer, samples, repeats)
        ref = ref or wall
        m = warm.models
        print(f"{name:<20} {wall:8.2f} {dur / wall:11.1f}x {wall / ref:11.2f}x  "
              f"emotion={m.emotion} whisper={m.whisper or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
