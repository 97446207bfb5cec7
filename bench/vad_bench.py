"""Chunk boundaries in noise: the Silero VAD chunker vs the energy splitter.

Each scene joins three clean clips (RAVDESS actors and LJ Speech, decoded to 16 kHz) with 1.0 s pauses of
digital silence; the reference is the clean scene's speech: 10 ms frames within :data:`REF_BELOW_PEAK_DB`
of the clip's loudest frame, pauses under 300 ms filled, one utterance per clip (independent of both
chunkers' rules). Noise is added at several SNRs (speech power over the reference frames vs noise power):

* ``white``: stationary white noise;
* ``pink``: stationary 1/f noise (fans, air conditioning, room rumble);
* ``bursty``: pink noise switched on and off in 0.4-1.5 s bursts (traffic, doors, handling): loud
  frames that are not voice, which a level threshold cannot tell from speech.

For each chunker (same ``Config`` otherwise: default min_silence_ms, keep_silence_ms, min/max_chunk_s)
it prints, over all scenes:

* ``recall``: share of reference speech frames inside a chunk (speech the analysis would miss otherwise);
* ``FA s/min``: seconds of chunks per minute of audio lying more than 0.3 s away from reference speech
  (noise analysed as if it were speech);
* ``start/end ms``: median absolute error of the first chunk start / last chunk end overlapping each
  reference utterance (both chunkers pad chunks by keep_silence_ms = 100 ms, so ~100 ms is the floor);
* ``split``: share of scenes cut into exactly three chunks, one per utterance;
* ``ms/s``: chunker CPU time per second of audio.

    .venv/bin/python -m bench.vad_bench            # 8 scenes, white/pink/bursty at clean, 20, 10, 5, 0 dB
    .venv/bin/python -m bench.vad_bench --quick    # 3 scenes, 2 SNRs
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SR = 16000
HOP = 160  # 10 ms frames
REF_BELOW_PEAK_DB = 30.0
REF_FILL_S = 0.3
GAP_S = 1.0
FA_MARGIN_S = 0.3
ROOT = Path(__file__).resolve().parents[1]
#: The corpora beside the project, else the subset shipped for the tests (fewer actors and clips).
DATASETS = next((p for p in (ROOT.parent / "shared" / "datasets", ROOT / "tests" / "data") if p.is_dir()),
                ROOT.parent / "shared" / "datasets")


# ------------------------------------------------------------------------------------------ reference
def reference_speech(x: np.ndarray, below_peak_db: float = REF_BELOW_PEAK_DB, fill_s: float = REF_FILL_S
                     ) -> tuple[int, int]:
    """(first, last+1) 10 ms frame of a clean clip's speech: frames within ``below_peak_db`` of its loudest,
    as one utterance (RAVDESS and LJ clips hold one sentence each)."""
    n = len(x) // HOP
    level = 10 * np.log10(np.mean(x[:n * HOP].reshape(n, HOP).astype(np.float64) ** 2, axis=1) + 1e-20)
    loud = np.flatnonzero(level > level.max() - below_peak_db)
    # drop isolated loud frames (clicks) farther than fill_s from the main body
    keep = [f for f in loud if np.sum(np.abs(loud - f) <= int(fill_s * 100)) > 3]
    loud = np.array(keep or loud.tolist())
    return int(loud[0]), int(loud[-1]) + 1


def clips(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` clean 16 kHz clips: RAVDESS (mixed actors and emotions) and LJ Speech, alternating."""
    from pipeline.audio import decode_audio

    rng = np.random.default_rng(seed)
    rows = list(csv.DictReader(open(DATASETS / "ravdess" / "manifest.csv", newline="")))
    lj = sorted((DATASETS / "speech").glob("LJ*.wav"))
    out = []
    for i in range(n):
        if i % 3 == 2 and lj:
            path = lj[(i // 3) % len(lj)]
        else:
            path = DATASETS / "ravdess" / rows[int(rng.integers(len(rows)))]["path"]
        out.append(decode_audio(path).samples)
    return out


@dataclass
class Scene:
    clean: np.ndarray
    refs: list[tuple[int, int]]  # reference utterances, 10 ms frames


def make_scenes(n_scenes: int, seed: int = 0) -> list[Scene]:
    parts = clips(3 * n_scenes, seed)
    scenes = []
    for s in range(n_scenes):
        audio, refs, pos = [], [], 0
        for k, x in enumerate(parts[3 * s:3 * s + 3]):
            if k:
                audio.append(np.zeros(int(GAP_S * SR), dtype=np.float32))
                pos += int(GAP_S * SR)
            a, b = reference_speech(x)
            refs.append((pos // HOP + a, pos // HOP + b))
            audio.append(x)
            pos += len(x)
        scenes.append(Scene(np.concatenate(audio), refs))
    return scenes


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    spec = np.fft.rfft(white)
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    pink = np.fft.irfft(spec, n)
    if kind == "pink":
        return pink
    if kind == "bursty":
        gate = np.zeros(n)
        pos = int(rng.uniform(0, 1.0) * SR)
        while pos < n:
            length = int(rng.uniform(0.4, 1.5) * SR)
            ramp = np.minimum(1, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.02 * SR))
            gate[pos:pos + length] = ramp[:max(0, min(length, n - pos))]
            pos += length + int(rng.uniform(0.5, 2.0) * SR)
        return pink * gate
    raise ValueError(f"unknown noise {kind!r}")


def mix(scene: Scene, kind: str, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    if snr_db is None:
        return scene.clean
    mask = np.zeros(len(scene.clean) // HOP, dtype=bool)
    for a, b in scene.refs:
        mask[a:b] = True
    frames = scene.clean[:len(mask) * HOP].reshape(-1, HOP)
    p_speech = float(np.mean(frames[mask].astype(np.float64) ** 2))
    nz = noise(kind, len(scene.clean), rng)
    active = nz[np.abs(nz) > 0]
    p_noise = float(np.mean(active ** 2)) if len(active) else 1.0
    nz = nz * np.sqrt(p_speech / p_noise / 10 ** (snr_db / 10))
    y = scene.clean + nz
    peak = np.max(np.abs(y))
    return (y / peak * 0.9 if peak > 0.99 else y).astype(np.float32)


# ------------------------------------------------------------------------------------------ scoring
def score(chunks, scene: Scene, n_samples: int) -> dict[str, float]:
    n = n_samples // HOP
    ref = np.zeros(n, dtype=bool)
    for a, b in scene.refs:
        ref[a:b] = True
    hyp = np.zeros(n, dtype=bool)
    for c in chunks:
        hyp[int(c.start_s * 100):int(np.ceil(c.end_s * 100))] = True
    near = np.convolve(ref, np.ones(2 * int(FA_MARGIN_S * 100) + 1), mode="same") > 0
    starts, ends = [], []
    for a, b in scene.refs:
        over = [c for c in chunks if c.end_s * 100 > a and c.start_s * 100 < b]
        if over:
            starts.append(abs(over[0].start_s * 1000 - a * 10))
            ends.append(abs(over[-1].end_s * 1000 - b * 10))
    return {"ref": float(ref.sum()), "hit": float((ref & hyp).sum()), "fa": float((hyp & ~near).sum()) / 100,
            "dur": n_samples / SR, "starts": starts, "ends": ends, "split": float(len(chunks) == len(scene.refs))}


def run(n_scenes: int, snrs: list[float | None], noises: list[str], seed: int = 0,
        threshold: float | None = None) -> list[dict]:
    from pipeline.chunking import split_on_silence, split_on_speech_activity
    from pipeline.config import Config

    cfg = Config() if threshold is None else Config(vad_threshold=threshold)
    chunkers = {"vad": split_on_speech_activity, "energy": split_on_silence}
    scenes = make_scenes(n_scenes, seed)
    split_on_speech_activity(scenes[0].clean, SR, cfg)  # load the model outside the timings
    rows = []
    for kind in noises:
        for snr in snrs:
            if snr is None and kind != noises[0]:
                continue
            rng = np.random.default_rng(seed + 1)
            mixes = [mix(s, kind, snr, rng) for s in scenes]
            for name, fn in chunkers.items():
                agg = {"ref": 0.0, "hit": 0.0, "fa": 0.0, "dur": 0.0, "starts": [], "ends": [], "split": 0.0}
                cpu = 0.0
                for s, y in zip(scenes, mixes):
                    t = time.process_time()
                    chunks = fn(y, SR, cfg)
                    cpu += time.process_time() - t
                    r = score(chunks, s, len(y))
                    for k in agg:
                        agg[k] += r[k]
                rows.append({
                    "noise": "clean" if snr is None else kind, "snr": "-" if snr is None else f"{snr:g}",
                    "chunker": name, "recall": agg["hit"] / agg["ref"], "fa_per_min": agg["fa"] / agg["dur"] * 60,
                    "start_ms": float(np.median(agg["starts"])) if agg["starts"] else float("nan"),
                    "end_ms": float(np.median(agg["ends"])) if agg["ends"] else float("nan"),
                    "split": agg["split"] / len(scenes), "ms_per_s": cpu / agg["dur"] * 1000,
                })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vad_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8, help="scenes of three utterances (default 8)")
    parser.add_argument("--snr", type=float, nargs="*", default=[20, 10, 5, 0], help="SNRs in dB")
    parser.add_argument("--noise", nargs="*", default=["white", "pink", "bursty"], choices=["white", "pink", "bursty"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=None, help="vad_threshold (default: the Config's)")
    parser.add_argument("--quick", action="store_true", help="3 scenes at 10 and 0 dB")
    args = parser.parse_args(argv)
    n, snrs = (3, [10.0, 0.0]) if args.quick else (args.scenes, list(args.snr))
    rows = run(n, [None] + snrs, args.noise, args.seed, args.threshold)
    print(f"{n} scenes of 3 utterances (RAVDESS + LJ Speech, 1 s pauses); reference: clean speech frames "
          f"within {REF_BELOW_PEAK_DB:g} dB of each clip's peak")
    print(f"{'noise':7} {'SNR dB':>6} {'chunker':8} {'recall':>7} {'FA s/min':>9} {'start ms':>9} {'end ms':>7} "
          f"{'split':>6} {'ms/s':>6}")
    for r in rows:
        print(f"{r['noise']:7} {r['snr']:>6} {r['chunker']:8} {r['recall']:7.3f} {r['fa_per_min']:9.1f} "
              f"{r['start_ms']:9.0f} {r['end_ms']:7.0f} {r['split']:6.2f} {r['ms_per_s']:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
