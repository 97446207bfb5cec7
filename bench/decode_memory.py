"""Memory of decoding a long file: pipeline.audio.decode_audio vs a read-everything baseline.

Writes an N-minute 44.1 kHz stereo FLAC (a gated tone, so the file stays small), then decodes it in
fresh processes with

* ``decode_audio`` (PyAV, per-packet resampling to 16 kHz mono into one preallocated buffer), and
* the baseline: ``soundfile.read`` of the whole file at its own rate and width, then a channel mean
  and ``librosa.resample`` to 16 kHz,

and prints, for each, the peak RSS growth and the peak traced (numpy/Python) allocation as multiples of
the 16 kHz float32 output size, plus the wall time. The target is at most about 2x for decode_audio.

    .venv/bin/python -m bench.decode_memory --minutes 30
    .venv/bin/python -m bench.decode_memory --minutes 120 --no-baseline
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def write_long_flac(path: Path, minutes: float, sample_rate: int = 44100) -> None:
    import soundfile as sf

    t = np.arange(10 * sample_rate) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    block = np.stack([tone, 0.5 * tone], axis=1).astype(np.float32)
    with sf.SoundFile(path, "w", sample_rate, 2, subtype="PCM_16") as fh:
        for _ in range(int(minutes * 6)):
            fh.write(block)


def _ours(path: str) -> np.ndarray:
    from pipeline.audio import decode_audio

    return decode_audio(path).samples


def _baseline(path: str) -> np.ndarray:
    import librosa
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32")
    return librosa.resample(x.mean(axis=1), orig_sr=sr, target_sr=16000).astype(np.float32)


def _measure(method: str, path: str, queue) -> None:
    import librosa  # noqa: F401  (imports outside the measured region)
    import soundfile  # noqa: F401

    import pipeline.audio  # noqa: F401

    fn = {"decode_audio": _ours, "baseline": _baseline}[method]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(path)
    wall = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024
    queue.put((out.nbytes, rss, traced, wall))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the generated file")
    ap.add_argument("--no-baseline", action="store_true", help="skip the (memory-hungry) baseline")
    args = ap.parse_args(argv)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.flac"
        write_long_flac(path, args.minutes)
        print(f"{args.minutes:g} min 44.1 kHz stereo FLAC, {path.stat().st_size / 1e6:.1f} MB")
        for method in ("decode_audio",) if args.no_baseline else ("decode_audio", "baseline"):
            q = ctx.Queue()
            p = ctx.Process(target=_measure, args=(method, str(path), q))
            p.start()
            nbytes, rss, traced, wall = q.get()
            p.join()
            print(f"{method:>12}: output {nbytes / 1e6:7.1f} MB | peak RSS growth {rss / nbytes:4.2f}x | "
                  f"peak traced {traced / nbytes:4.2f}x | {wall:6.2f} s")


if __name__ == "__main__":
    main()
