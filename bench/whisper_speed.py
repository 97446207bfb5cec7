"""Whisper speed on CPU by model size, and Whisper's 30 s windows vs one decode per chunk.

``python -m bench.whisper_speed [--quick] [--sizes tiny,base,small] [--tokens N] [--threads N]``

Part 1, sizes: each size is built from its official dimensions with random weights (speed does not
depend on the values) and timed in rounds (every size once per round, so load from other processes
spreads evenly over them):

- encoder: one 30 s window (Whisper pads every call to 30 s);
- decode, per token: ``--tokens`` decoder steps with the kv-cache, greedy (beam 1) and beam 5:
  'forced' drives the decoder directly with forced tokens (a random decoder would otherwise stop or
  loop at will), reordering the kv-cache each step as beam search does; 'loop' is Whisper's own
  decoding loop (logit filters, beam bookkeeping) with end-of-text suppressed;
- align: the full forward pass Whisper's word timestamps make once per window (encoder + decoder
  over the window's tokens).

From these, ``×RT`` estimates the seconds of compute per second of speech when transcribing in
Whisper's 30 s windows: (encoder + ``TOKENS_PER_WINDOW`` decode steps + align) / 30 s, with
``TOKENS_PER_WINDOW`` = 100 (≈3.3 tokens per second of speech including timestamps). Language
detection adds one encoder pass per file. Each figure is also given relative to tiny (same run).

Part 2, strategies: ``pipeline.transcribe.transcribe_chunks`` on 10 RAVDESS clips (~3.5 s each)
joined with 1 s gaps, tiny dims, random weights, language detected, beam 5, as analysis calls it.
A random decoder never emits end-of-text, so tokens per decode are capped at what real speech of
that length would give (``sample_len``: 100 per 30 s window, 12 per ~3.5 s chunk); its text is a
repetition loop, so every window is decoded once and then skipped (no alignment pass), on both
sides alike. Printed: wall time, decodes, and the ratio per_chunk / windows, then an estimate per
size that adds the word-alignment pass real weights would make after every decode.

Measured (``--threads 1``, shared 2-core x86 VM, torch 2.13 CPU, load average ~5 from other jobs;
took 196 s; CPU seconds, which load disturbs least; ×RT b5 by wall time in brackets)::

    size   encoder/30 s  loop b1 ms/tok  loop b5 ms/tok  stock b5 ms/tok  align/30 s  ×RT b1  ×RT b5
    tiny       0.27          16.6            33.0            53.4            0.34       0.08    0.13 (0.16)
    base       0.67          26.9            64.2           217.1            0.84       0.14    0.26 (0.35)
    small      2.38          78.0           169.9           324.6            3.04       0.44    0.75 (1.09)

    strategies, 45.7 s file, 10 chunks: windows 2 decodes, 5.7 CPU s; per_chunk 10 decodes, 11.1 CPU s
    (×1.9); with alignment passes (estimate): ×2.1 tiny, ×2.4 base, ×2.7 small.

With torch's default 2 threads on the same busy machine every figure was 2-10x worse and erratic
(OpenMP threads waiting on each other while other processes hold the cores): measure with
``--threads 1`` on shared machines.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "datasets" / "ravdess"
TOKENS_PER_WINDOW = 100
WINDOW_S = 30.0

#: Official Whisper dimensions (openai/whisper checkpoints' "dims").
OFFICIAL_DIMS: dict[str, dict[str, int]] = {
    "tiny": dict(n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_text_state=384, n_text_head=6, n_text_layer=4),
    "base": dict(n_audio_state=512, n_audio_head=8, n_audio_layer=6, n_text_state=512, n_text_head=8, n_text_layer=6),
    "small": dict(n_audio_state=768, n_audio_head=12, n_audio_layer=12, n_text_state=768, n_text_head=12,
                  n_text_layer=12),
    "medium": dict(n_audio_state=1024, n_audio_head=16, n_audio_layer=24, n_text_state=1024, n_text_head=16,
                   n_text_layer=24),
    "large-v3": dict(n_mels=128, n_vocab=51866, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
                     n_text_state=1280, n_text_head=20, n_text_layer=32),
    "turbo": dict(n_mels=128, n_vocab=51866, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
                  n_text_state=1280, n_text_head=20, n_text_layer=4),
}
_COMMON = dict(n_mels=80, n_audio_ctx=1500, n_vocab=51865, n_text_ctx=448)


def dims_for(size: str) -> Any:
    from whisper.model import ModelDimensions

    return ModelDimensions(**{**_COMMON, **OFFICIAL_DIMS[size]})


def random_whisper(size: str, seed: int = 0) -> Any:
    """A Whisper of ``size``'s official shape with random weights, in eval mode on CPU."""
    import torch
    from whisper.model import Whisper

    torch.manual_seed(seed)
    model = Whisper(dims_for(size)).eval()
    with torch.no_grad():
        model.decoder.positional_embedding.normal_(0.0, 0.02)  # left as torch.empty by Whisper
    return model


Pair = tuple[float, float]  # (wall s, CPU s)


def _timed(fn: Callable[[], Any]) -> Pair:
    """(wall, CPU) seconds of ``fn()``; CPU counts this process's threads only."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def time_forced(model: Any, audio_features: Any, n_tokens: int, beam: int) -> Pair:
    """(wall, CPU) per token of ``n_tokens`` kv-cached decoder steps on ``beam`` sequences (forced random tokens)."""
    import torch
    from whisper.decoding import PyTorchInference
    from whisper.tokenizer import get_tokenizer

    tok = get_tokenizer(model.is_multilingual, num_languages=model.num_languages, language="en")
    sot = list(tok.sot_sequence)
    forced = torch.randint(0, tok.eot, (beam, n_tokens), generator=torch.Generator().manual_seed(0))
    feats = audio_features.repeat_interleave(beam, 0)
    inference = PyTorchInference(model, len(sot))

    def run() -> None:
        tokens = torch.tensor([sot] * beam)
        with torch.no_grad():
            for i in range(n_tokens):
                logits = inference.logits(tokens, feats)[:, -1]
                torch.log_softmax(logits.float(), dim=-1).topk(beam + 1, dim=-1)  # what beam search ranks
                if beam > 1:  # beam search reorders the kv-cache every step (identity would be skipped)
                    inference.rearrange_kv_cache([(j + i + 1) % beam for j in range(beam)])
                tokens = torch.cat([tokens, forced[:, i:i + 1]], dim=-1)

    wall, cpu = _timed(run)
    inference.cleanup_caching()
    return wall / n_tokens, cpu / n_tokens


def time_whisper_loop(model: Any, audio_features: Any, n_tokens: int, beam: int, *, stock: bool = False) -> Pair:
    """(wall, CPU) per token of a whole decoding loop (logit filters, beam bookkeeping), temperature 0.

    ``pipeline.transcribe.decode_window`` (what analysis runs), or Whisper's stock ``model.decode``
    with ``stock=True``. End-of-text is suppressed so that every run decodes exactly ``n_tokens`` steps.
    """
    import whisper
    from whisper.tokenizer import get_tokenizer

    from pipeline.transcribe import decode_window

    eot = get_tokenizer(model.is_multilingual, num_languages=model.num_languages).eot
    options = whisper.DecodingOptions(language="en", sample_len=n_tokens, beam_size=beam if beam > 1 else None,
                                      suppress_tokens=[-1, eot], fp16=False)
    decode = model.decode if stock else (lambda mel, opts: decode_window(model, mel, opts))
    out: list[Any] = []
    wall, cpu = _timed(lambda: out.append(decode(audio_features[0], options)))
    if len(out[0].tokens) != n_tokens:
        logger.warning("decoded %d tokens instead of %d", len(out[0].tokens), n_tokens)
    return wall / n_tokens, cpu / n_tokens


KEYS = ("encoder", "forced1", "forced5", "loop1", "loop5", "stock5", "align")


def bench_sizes(sizes: list[str], *, n_tokens: int, rounds: int) -> dict[str, dict[str, list[Pair]]]:
    """Per size, per measure (``KEYS``): one (wall, CPU) pair per round; decode measures are per token."""
    import torch
    import whisper

    models = {s: random_whisper(s) for s in sizes}
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(WINDOW_S * 16000))).astype(np.float32)
    mels = {s: whisper.log_mel_spectrogram(audio, m.dims.n_mels)[None] for s, m in models.items()}
    times: dict[str, dict[str, list[Pair]]] = {s: {k: [] for k in KEYS} for s in sizes}
    with torch.no_grad():
        for s, m in models.items():  # warm-up (allocations, oneDNN kernels)
            time_forced(m, m.encoder(mels[s]), 3, 5)
        for r in range(rounds):
            for s in (sizes if r % 2 == 0 else sizes[::-1]):
                m, mel, t = models[s], mels[s], times[s]
                feats: list[Any] = []
                t["encoder"].append(_timed(lambda: feats.append(m.encoder(mel))))
                t["forced1"].append(time_forced(m, feats[0], n_tokens, 1))
                t["forced5"].append(time_forced(m, feats[0], n_tokens, 5))
                t["loop1"].append(time_whisper_loop(m, feats[0], n_tokens, 1))
                t["loop5"].append(time_whisper_loop(m, feats[0], n_tokens, 5))
                t["stock5"].append(time_whisper_loop(m, feats[0], n_tokens, 5, stock=True))
                window_tokens = torch.randint(0, 50000, (1, TOKENS_PER_WINDOW + 3))
                t["align"].append(_timed(lambda: m(mel, window_tokens)))
            print(f"  round {r + 1}/{rounds} done", flush=True)
    return times


def ravdess_file(n_clips: int, gap_s: float = 1.0) -> tuple[np.ndarray, list[Any]]:
    """n RAVDESS clips (different actors) joined by ``gap_s`` of silence, and their spans as chunks."""
    import soundfile as sf

    from pipeline.types import Chunk

    with open(RAVDESS / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[:: max(1, len(rows) // n_clips)][:n_clips]
    parts, chunks, t = [], [], 0.0
    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    for r in rows:
        x, sr = sf.read(str(RAVDESS / r["path"]), dtype="float32", always_2d=True)
        assert sr == 16000, (r["path"], sr)
        x = x.mean(1)
        chunks.append(Chunk(round(t, 3), round(t + len(x) / 16000, 3)))
        parts += [x, gap]
        t += (len(x) + len(gap)) / 16000
    return np.concatenate(parts), chunks


def bench_strategies(n_clips: int, reps: int) -> dict[str, Any]:
    """Median wall and CPU seconds and decode count of each strategy on the RAVDESS file (+ total tokens)."""
    import logging

    from pipeline import transcribe as T

    model = random_whisper("tiny")
    model.emotivoice_name = "tiny (random)"
    samples, chunks = ravdess_file(n_clips)
    span_s = chunks[-1].end_s - chunks[0].start_s
    speech_s = sum(c.duration_s for c in chunks)
    # Tokens real speech would give (a random decoder fills whatever it is allowed).
    chunk_tokens = math.ceil(TOKENS_PER_WINDOW / WINDOW_S * max(c.duration_s for c in chunks))
    window_tokens = math.ceil(chunk_tokens * len(chunks) / math.ceil(span_s / WINDOW_S))
    print(f"  file: {len(samples) / 16000:.1f} s, {len(chunks)} chunks, {speech_s:.1f} s of speech; "
          f"tokens per decode: windows {window_tokens}, per_chunk {chunk_tokens}")
    decodes = {"n": 0}
    real_decode = T.decode_window

    def counting_decode(*a: Any, **k: Any) -> Any:
        decodes["n"] += 1
        return real_decode(*a, **k)

    T.decode_window = counting_decode  # restored below
    quiet = logging.getLogger("pipeline.transcribe")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the warm-up's random words may spend the decode budget: expected
    T.transcribe_chunks(model, samples, chunks[:1], beam_size=5, sample_len=4)  # warm-up (numba DTW jit)
    quiet.setLevel(level)
    runs: dict[str, list[Pair]] = {"windows": [], "per_chunk": []}
    counts: dict[str, int] = {}
    for r in range(reps):
        for strategy in (["windows", "per_chunk"] if r % 2 == 0 else ["per_chunk", "windows"]):
            decodes["n"] = 0
            runs[strategy].append(_timed(lambda: T.transcribe_chunks(
                model, samples, chunks, beam_size=5, strategy=strategy,
                sample_len=window_tokens if strategy == "windows" else chunk_tokens)))
            counts[strategy] = decodes["n"]
    T.decode_window = real_decode
    out: dict[str, Any] = {s: {"wall": statistics.median(p[0] for p in v), "cpu": statistics.median(p[1] for p in v),
                               "decodes": counts[s]} for s, v in runs.items()}
    out["tokens"] = chunk_tokens * len(chunks)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.whisper_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny and base only, 1 round, 20 tokens, 5 clips")
    parser.add_argument("--sizes", default=None, help="comma-separated sizes (default tiny,base,small)")
    parser.add_argument("--tokens", type=int, default=None, help="decoder steps timed (default 30)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per size (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = (args.sizes or ("tiny,base" if args.quick else "tiny,base,small")).split(",")
    unknown = [s for s in sizes if s not in OFFICIAL_DIMS]
    if unknown:
        parser.error(f"unknown size(s) {', '.join(unknown)}; choose from {', '.join(OFFICIAL_DIMS)}")
    n_tokens = args.tokens or (20 if args.quick else 30)
    rounds = args.rounds or (1 if args.quick else 2)
    n_clips = 5 if args.quick else 10

    print(f"# whisper speed: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}", flush=True)
    t0 = time.perf_counter()
    times = bench_sizes(sizes, n_tokens=n_tokens, rounds=rounds)
    base = sizes[0]
    rt: dict[str, dict[str, float]] = {}
    for which, idx in (("wall", 0), ("CPU", 1)):
        med = {s: {k: statistics.median(p[idx] for p in times[s][k]) for k in KEYS} for s in sizes}
        print(f"\n{which} time per 30 s window, median of {rounds} round(s); per token (ms) over {n_tokens} tokens: "
              "'forced' = decoder network only, 'loop' = pipeline's decoding loop, 'stock' = whisper's own; ×RT = (encoder + "
              f"{TOKENS_PER_WINDOW} loop tokens + align) / 30 s; (×n) = relative to {base} in this run")
        print(f"{'size':<7}" + "".join(f"{h:>15}" for h in (
            "encoder s", "forced b1 ms", "forced b5 ms", "loop b1 ms", "loop b5 ms", "stock b5 ms", "align s",
            "×RT b1", "×RT b5")))
        for s in sizes:
            m, mb = med[s], med[base]
            rt_s = {b: (m["encoder"] + TOKENS_PER_WINDOW * m[f"loop{b[1]}"] + m["align"]) / WINDOW_S for b in ("b1", "b5")}
            rt_b = {b: (mb["encoder"] + TOKENS_PER_WINDOW * mb[f"loop{b[1]}"] + mb["align"]) / WINDOW_S
                    for b in ("b1", "b5")}
            rt[f"{s}/{which}"] = rt_s
            cells = [f"{m['encoder']:>7.2f} (×{m['encoder'] / mb['encoder']:.1f})"]
            cells += [f"{m[k] * 1e3:>8.1f} (×{m[k] / mb[k]:.1f})" for k in ("forced1", "forced5", "loop1", "loop5", "stock5")]
            cells.append(f"{m['align']:>7.2f} (×{m['align'] / mb['align']:.1f})")
            cells += [f"{rt_s[b]:>6.2f} (×{rt_s[b] / rt_b[b]:.1f})" for b in ("b1", "b5")]
            print(f"{s:<7}" + "".join(f"{c:>15}" for c in cells), flush=True)
        fits = [s for s in sizes if rt[f"{s}/{which}"]["b5"] <= 0.5]
        print(f"largest size at ≤0.5×RT ({which}) with beam 5 (room left for the emotion model): "
              f"{fits[-1] if fits else 'none'}")

    print(f"\nwindows vs per_chunk (tiny dims, {n_clips} RAVDESS clips + 1 s gaps, beam 5, language detected)",
          flush=True)
    strat = bench_strategies(n_clips, reps=1 if args.quick else 2)
    w, p = strat["windows"], strat["per_chunk"]
    for name in ("windows", "per_chunk"):
        v = strat[name]
        print(f"  {name:<10} wall {v['wall']:6.2f} s (×{v['wall'] / w['wall']:.2f})   "
              f"CPU {v['cpu']:6.2f} s (×{v['cpu'] / w['cpu']:.2f})   {v['decodes']} decodes")
    # With real weights every decode is followed by one alignment pass (encoder + decoder forward),
    # which the random model's skipped windows do not pay; estimate both strategies per size from the
    # unit costs above (CPU medians): detections + decodes x (encoder + align) + the same tokens in total.
    cpu = {s: {k: statistics.median(p[1] for p in times[s][k]) for k in KEYS} for s in sizes}
    n_chunks, total_tokens = strat["per_chunk"]["decodes"], strat["tokens"]
    print(f"  estimated with real weights (CPU s: language detection + decodes × (encoder + align) + "
          f"{total_tokens} beam-5 tokens in all):")
    for s in sizes:
        c = cpu[s]
        win = c["encoder"] + w["decodes"] * (c["encoder"] + c["align"]) + total_tokens * c["loop5"]
        per = n_chunks * (2 * c["encoder"] + c["align"]) + total_tokens * c["loop5"]
        print(f"    {s:<7} windows {win:6.1f} s   per_chunk {per:6.1f} s   (×{per / win:.1f})")
    print(f"\ntook {time.perf_counter() - t0:.0f} s")
    return {"rt": rt, "strategies": strat}


if __name__ == "__main__":
    main()
