"""faster-whisper with the real packaged weights: accuracy on read speech and speed against openai-whisper.

``python -m bench.whisper_fw [--quick] [--threads N] [--tokens N]``

Accuracy (real weights, int8, CPU): word error rate on ``../shared/datasets/speech`` (9 clips, 62 s; each
clip one chunk, beam 5, language detected), after Whisper's English normaliser on both sides, for the
packaged ``base`` (multilingual) and ``tiny.en``; the language detection probability of jfk.flac; and the
long-file check: all clips joined (0.5 s gaps, >= 60 s) transcribed in 30 s windows, words of the last clip.

Speed, same run, same audio, same thread count: faster-whisper (CTranslate2 int8, real weights) against
openai-whisper (torch fp32) of the same size. openai-whisper's ``.pt`` weights cannot be downloaded here,
so the openai side runs **random weights of the official shape** (compute does not depend on the values):
encoder per 30 s window, and per decoded token at beam 1 and beam 5 with end-of-text suppressed so both
decode exactly ``--tokens`` steps. ×RT (faster-whisper) is measured end to end with real decoding and
word timestamps, on the long file in 30 s windows (as analysis runs) and clip by clip (each clip padded to
a 30 s window: costlier per second); the openai ×RT is the estimate of ``bench.whisper_speed`` (encoder +
100 beam-5 tokens + alignment pass per 30 s window), labelled as such.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT.parent / "shared" / "datasets" / "speech"
SAMPLE_RATE = 16000


# --------------------------------------------------------------------------- word error rate


def normalise(text: str) -> list[str]:
    """Whisper's English text normaliser (numbers, spellings, punctuation), split into words."""
    from whisper.normalizers import EnglishTextNormalizer

    return EnglishTextNormalizer()(text).split()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER: total edit distance over total reference words, both normalised."""
    errors = words = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = normalise(ref), normalise(hyp)
        errors += edit_distance(r, h)
        words += len(r)
    return errors / max(words, 1)


# --------------------------------------------------------------------------- data


def read_speech(folder: Path = SPEECH) -> list[tuple[str, np.ndarray, str]]:
    """(name, 16 kHz float32 samples, reference) for every clip of the speech manifest."""
    import soundfile as sf
    from scipy.signal import resample_poly

    out = []
    with open(folder / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            data, sr = sf.read(str(folder / row["path"]), dtype="float32", always_2d=True)
            x = data.mean(axis=1)
            if sr != SAMPLE_RATE:
                g = np.gcd(int(sr), SAMPLE_RATE)
                x = resample_poly(x, SAMPLE_RATE // g, int(sr) // g).astype(np.float32)
            out.append((row["path"], np.ascontiguousarray(x, dtype=np.float32), row["transcript"]))
    return out


def long_file(clips: list[tuple[str, np.ndarray, str]], *, min_s: float = 60.0, gap_s: float = 0.5):
    """The clips joined with ``gap_s`` of silence (repeated until ``min_s``): samples and (chunk, reference) list."""
    from pipeline.types import Chunk

    gap = np.zeros(int(gap_s * SAMPLE_RATE), dtype=np.float32)
    parts: list[np.ndarray] = []
    spans: list[tuple[Any, str]] = []
    t = 0.0
    while True:
        for _, x, ref in clips:
            spans.append((Chunk(round(t, 3), round(t + len(x) / SAMPLE_RATE, 3)), ref))
            parts += [x, gap]
            t += (len(x) + len(gap)) / SAMPLE_RATE
            if t >= min_s and spans[-1][0].duration_s >= 3.0:  # end on a clip with a few words in it
                return np.concatenate(parts), spans


def transcribe_clips(model: Any, clips: list[tuple[str, np.ndarray, str]], *, beam_size: int = 5) -> list[Any]:
    """One ChunkTranscript per clip (the whole clip as one chunk, language detected)."""
    from pipeline.transcribe import transcribe_chunks
    from pipeline.types import Chunk

    return [transcribe_chunks(model, x, [Chunk(0.0, len(x) / SAMPLE_RATE)], beam_size=beam_size)[0]
            for _, x, _ in clips]


# --------------------------------------------------------------------------- speed


def _timed(fn: Callable[[], Any]) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def fw_unit_costs(fw: Any, audio: np.ndarray, n_tokens: int, rounds: int) -> dict[str, float]:
    """faster-whisper's encoder per 30 s window and ms per token at beam 1 and 5 (wall s; median of rounds)."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    model = fw.model
    feats = model.feature_extractor(audio[: 30 * SAMPLE_RATE])[:, :3000]
    feats = np.ascontiguousarray(np.pad(feats, ((0, 0), (0, max(0, 3000 - feats.shape[1])))), dtype=np.float32)
    storage = ctranslate2.StorageView.from_array(feats[None])
    tok = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="en")
    prompt = [list(tok.sot_sequence)]
    out: dict[str, list[float]] = {"encoder": [], "b1": [], "b5": []}
    for _ in range(rounds + 1):  # the first round warms up
        enc: list[Any] = []
        out["encoder"].append(_timed(lambda: enc.append(model.model.encode(storage, to_cpu=False)))[0])
        for b in (1, 5):
            gen = lambda: model.model.generate(enc[0], prompt, beam_size=b, max_length=n_tokens + len(prompt[0]),  # noqa: E731
                                               suppress_tokens=[-1, tok.eot], suppress_blank=False)
            out[f"b{b}"].append(_timed(gen)[0] / n_tokens)
    return {k: statistics.median(v[1:]) for k, v in out.items()}


def openai_unit_costs(size: str, audio: np.ndarray, n_tokens: int, rounds: int) -> dict[str, float]:
    """openai-whisper (random weights, official shape): encoder per 30 s and ms per token, b1/b5 (wall s)."""
    import torch
    import whisper

    from bench.whisper_speed import random_whisper, time_whisper_loop

    model = random_whisper(size)
    mel = whisper.pad_or_trim(whisper.log_mel_spectrogram(audio[: 30 * SAMPLE_RATE], model.dims.n_mels),
                              whisper.audio.N_FRAMES)[None]
    out: dict[str, list[float]] = {"encoder": [], "b1": [], "b5": [], "align": []}
    tokens = torch.randint(0, 50000, (1, 103))
    with torch.no_grad():
        for _ in range(rounds + 1):
            feats: list[Any] = []
            out["encoder"].append(_timed(lambda: feats.append(model.encoder(mel)))[0])
            out["b1"].append(time_whisper_loop(model, feats[0], n_tokens, 1)[0])
            out["b5"].append(time_whisper_loop(model, feats[0], n_tokens, 5)[0])
            out["align"].append(_timed(lambda: model(mel, tokens))[0])
    return {k: statistics.median(v[1:]) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.whisper_fw", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="base only, 1 round, 20 tokens")
    parser.add_argument("--threads", type=int, default=2, help="threads on both sides (default 2)")
    parser.add_argument("--tokens", type=int, default=None, help="decoder steps timed (default 40)")
    parser.add_argument("--speech", type=Path, default=SPEECH, help="folder with manifest.csv (path, transcript)")
    args = parser.parse_args(argv)
    import tempfile

    import torch

    from pipeline.config import Config
    from pipeline.transcribe import load_whisper, transcribe_chunks

    torch.set_num_threads(args.threads)
    n_tokens = args.tokens or (20 if args.quick else 40)
    rounds = 1 if args.quick else 3
    sizes = [("base", "base")] if args.quick else [("base", "base"), ("tiny.en", "tiny")]
    print(f"# faster-whisper vs openai-whisper: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, load average {os.getloadavg()[0]:.1f}", flush=True)
    clips = read_speech(args.speech)
    speech_s = sum(len(x) for _, x, _ in clips) / SAMPLE_RATE
    refs = [r for _, _, r in clips]
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config(device="cpu", whisper_dir=os.environ.get("EMOTIVOICE_WHISPER_DIR") or tmp,
                     whisper_threads=args.threads)
        for fw_name, oa_size in sizes:
            fw = load_whisper(fw_name, cfg)
            transcribe_clips(fw, clips[:1])  # warm-up
            outs: list[Any] = []
            wall, cpu = _timed(lambda: outs.extend(transcribe_clips(fw, clips)))
            wer = word_error_rate(refs, [o.text for o in outs])
            jfk = [o for (name, _, _), o in zip(clips, outs) if name.startswith("jfk")]
            samples, spans = long_file(clips)
            long_out: list[Any] = []
            long_wall, long_cpu = _timed(lambda: long_out.extend(transcribe_chunks(fw, samples, [c for c, _ in spans])))
            long = long_out
            long_speech_s = sum(c.duration_s for c, _ in spans)
            last_chunk, last_ref = spans[-1]
            tail_wer = word_error_rate([last_ref], [long[-1].text])
            tail_end = max((w.end_s for w in long[-1].words), default=float("nan"))
            units = fw_unit_costs(fw, samples, n_tokens, rounds)
            oa = openai_unit_costs(oa_size, samples, n_tokens, rounds)
            oa_rt = (oa["encoder"] + 100 * oa["b5"] + oa["align"]) / 30.0
            results[fw_name] = dict(wer=wer, rt_wall=wall / speech_s, rt_cpu=cpu / speech_s, units=units, openai=oa,
                                    rt_long_wall=long_wall / long_speech_s, rt_long_cpu=long_cpu / long_speech_s,
                                    openai_rt_estimate=oa_rt, tail_wer=tail_wer, tail_end=tail_end,
                                    last_chunk=last_chunk, long_s=len(samples) / SAMPLE_RATE,
                                    jfk_language=(jfk[0].language, jfk[0].language_probability) if jfk else None)
            r = results[fw_name]
            print(f"\nfaster-whisper {fw_name} (int8, real weights) vs openai-whisper {oa_size} (fp32, random weights, "
                  f"same shape), {args.threads} threads, wall time")
            print(f"  WER {100 * wer:.1f} % on {len(clips)} clips ({speech_s:.1f} s), Whisper's English normaliser; "
                  f"×RT clip by clip (each padded to 30 s) {r['rt_wall']:.3f} (CPU {r['rt_cpu']:.3f})")
            if jfk:
                print(f"  jfk.flac language {jfk[0].language} p={jfk[0].language_probability}")
            print(f"  long file {r['long_s']:.1f} s (30 s windows, as analysis runs): ×RT {r['rt_long_wall']:.3f} "
                  f"(CPU {r['rt_long_cpu']:.3f}); last clip {last_chunk.start_s:.1f}-{last_chunk.end_s:.1f} s, "
                  f"WER there {100 * tail_wer:.1f} %, last word ends {tail_end:.2f} s")
            print(f"  encoder per 30 s: {units['encoder']:.3f} s vs {oa['encoder']:.3f} s (×{oa['encoder'] / units['encoder']:.1f})")
            for b in ("b1", "b5"):
                print(f"  decode {b} ms/token: {1e3 * units[b]:.1f} vs {1e3 * oa[b]:.1f} (×{oa[b] / units[b]:.1f})")
            print(f"  openai-whisper ×RT estimate (encoder + 100 b5 tokens + align per 30 s): {oa_rt:.3f}; "
                  f"measured faster-whisper ×RT on the long file {r['rt_long_wall']:.3f} "
                  f"(×{oa_rt / r['rt_long_wall']:.1f})", flush=True)
    print(f"\ntook {time.perf_counter() - t0:.0f} s")
    return results


if __name__ == "__main__":
    main()
