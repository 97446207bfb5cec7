"""Words in the right chunk: Whisper over the file's span vs over the chunks' speech packed together.

`python -m bench.transcript_attribution [--quick] [--beams 1,5]`. The input is a conversation of clips whose
words are known (RAVDESS actors' two sentences and LJ Speech read sentences, from ../shared/datasets, else
tests/data) joined with pauses of 0.4-3 s, chunked as `emotivoice ingest` chunks it (VAD). Each strategy
transcribes it with faster-whisper base (the packaged weights, int8, language detected):

- ``file span`` (the baseline, the analysis before packing): Whisper's 30 s windows from the first chunk's
  start to the last chunk's end, words handed to chunks by midpoint, wordless stretches decoded again;
- ``packed``: what the analysis runs now (:func:`pipeline.transcribe.transcribe_chunks`): the chunks' audio
  back to back, pauses cut to ``pipeline.words.PACK_GAP_S``, so long pauses cost no encoder passes.

Printed per strategy and beam, as means over ``--seeds`` conversations (different clips and pauses; Whisper
skipping or misplacing one repeated short sentence moves a single conversation's figure a lot): x real time,
WER of the whole transcript, the *attributed* WER (each word scored against the clip its time lies in: a word
put in the wrong chunk counts as an error twice) and its worst conversation, with ratios to the baseline at
the same beam.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import numpy as np

from bench.full_analysis import _datasets
from bench.whisper_fw import edit_distance, normalise

GAPS_S = (0.4, 0.8, 1.5, 3.0, 0.6)


def conversation(seconds: float, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """(16 kHz signal, [(start s, end s, reference text)]) of clips with known words and pauses between."""
    import soundfile as sf

    from pipeline.audio import decode_audio

    data = _datasets()
    with open(data / "ravdess" / "manifest.csv", newline="") as fh:
        rav = [r for r in csv.DictReader(fh) if (data / "ravdess" / r["path"]).is_file()]
    with open(data / "speech" / "manifest.csv", newline="") as fh:
        speech = [r for r in csv.DictReader(fh) if r["path"].endswith(".wav") and r["path"].startswith("LJ")]
    rav.sort(key=lambda r: (int(r["actor"]), r["path"]))
    parts, spans, t, i = [], [], 0.0, 0
    while t < seconds:
        if i % 4 == 3 and speech:
            row = speech[(i // 4 + seed) % len(speech)]
            x = decode_audio(data / "speech" / row["path"]).samples
        else:
            row = rav[(i * 37 + seed * 101) % len(rav)]
            x = sf.read(str(data / "ravdess" / row["path"]), dtype="float32")[0]
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        spans.append((t, t + len(x) / 16000, row["transcript"]))
        gap = np.zeros(int(GAPS_S[(i + seed) % len(GAPS_S)] * 16000), np.float32)
        parts += [x, gap]
        t += (len(x) + len(gap)) / 16000
        i += 1
    return np.concatenate(parts), spans


def file_span(model, samples, chunks, *, beam_size: int):
    """The analysis before packing: Whisper over [first chunk start, last chunk end] (baseline)."""
    from pipeline import transcribe as tr
    from pipeline.words import assign_words, pack_speech

    lang, _ = tr.detect_language(model, pack_speech(samples, chunks, 0.0).audio[: 30 * 16000])
    span = (max(0.0, chunks[0].start_s), min(len(samples) / 16000, chunks[-1].end_s))
    opts = dict(language=lang, beam_size=beam_size, sample_len=None,
                max_compression_ratio=tr.COMPRESSION_RATIO_THRESHOLD)
    words = tr._transcribe_words(model, samples, clip=span, **opts)
    per_chunk = assign_words(words, chunks)
    return tr._repair_gaps(model, samples, chunks, words, per_chunk, opts)


def packed(model, samples, chunks, *, beam_size: int):
    from pipeline.transcribe import transcribe_chunks

    return [t.words for t in transcribe_chunks(model, samples, chunks, beam_size=beam_size)]


def scores(per_chunk_words, spans) -> tuple[float, float]:
    """(WER of the whole transcript, attributed WER) against the clips' references."""
    words = [w for ws in per_chunk_words for w in ws]
    ref_all = " ".join(s[2] for s in spans)
    whole = edit_distance(normalise(ref_all), normalise(" ".join(w.word for w in words))) / len(normalise(ref_all))
    heard = [[] for _ in spans]
    for w in words:
        mid = 0.5 * (w.start_s + w.end_s)
        d = [max(a - mid, 0.0, mid - b) for a, b, _ in spans]
        heard[int(np.argmin(d))].append(w.word)
    errors = sum(edit_distance(normalise(ref), normalise(" ".join(h))) for (_, _, ref), h in zip(spans, heard))
    return whole, errors / sum(len(normalise(s[2])) for s in spans)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transcript_attribution")
    parser.add_argument("--quick", action="store_true", help="one 30 s conversation, beam 1 only")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--seeds", type=int, default=5, help="conversations (different clips and pauses)")
    parser.add_argument("--beams", default="5,1")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipeline.analyze import Analyzer
    from pipeline.chunking import chunk_speech
    from pipeline.config import Config

    analyzer = Analyzer(Config())
    model = analyzer.whisper()
    if model is None:
        raise SystemExit("no Whisper weights: run `make install` (the packaged faster-whisper base)")
    seeds = 1 if args.quick else args.seeds
    beams = [1] if args.quick else [int(b) for b in args.beams.split(",")]
    rows: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    total = 0.0
    for seed in range(seeds):
        samples, spans = conversation(30.0 if args.quick else args.seconds, seed)
        total += len(samples) / 16000
        chunks = chunk_speech(samples, 16000, analyzer.config).chunks
        if seed == 0:
            packed(model, samples[: 16000 * 3], chunks[:1], beam_size=1)  # warm
        for beam in beams:
            for name, fn in (("file span", file_span), ("packed", packed)):
                t = time.perf_counter()
                per_chunk = fn(model, samples, chunks, beam_size=beam)
                rows.setdefault((beam, name), []).append((time.perf_counter() - t, *scores(per_chunk, spans)))
    print(f"{seeds} conversation(s), {total:.0f} s in all; {model.emotivoice_name}; means over conversations")
    print(f"{'strategy':<10} {'beam':>4} {'x rt':>6} {'WER':>6} {'attributed WER':>15} {'worst':>6}")
    for beam in beams:
        base = None
        for name in ("file span", "packed"):
            r = np.array(rows[(beam, name)])
            sec, whole, attributed = r.mean(axis=0)
            base = base or (sec, attributed)
            ratio = f"{attributed / base[1]:.2f}x" if base[1] > 0 else "n/a (no error at the baseline)"
            print(f"{name:<10} {beam:>4} {total / r[:, 0].sum():6.1f} {whole:6.3f} {attributed:15.3f} "
                  f"{r[:, 2].max():6.3f}   (time {sec / base[0]:.2f}x, attributed WER {ratio} of file span "
                  f"at beam {beam})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
