"""Who spoke: diarization error rate of the pipeline's chunking + speaker labels on joined RAVDESS clips.

Each test file joins 8-12 RAVDESS clips of 2, 3 or 4 actors (every actor at least twice, turns in random
order, mixed emotions; the clips' own ~1 s leading/trailing silences are the pauses between turns). The
reference labels each clip's speech (10 ms frames within 30 dB of the clip's peak, as in
``bench.vad_bench``) with its actor. The hypothesis is what ``pipeline.analyze`` stores: the chunks of
``chunk_speech`` (default Config: the VAD chunker) and their ``assign_speakers`` labels; a chunk labelled
None counts as no speech.

DER = (missed speech + false alarm + speaker confusion) / reference speech, frame by frame, no
overlap (there is none), a 0.25 s collar around reference boundaries by default, after the one-to-one mapping of hypothesis to reference speakers that maximises
their overlap (``scipy.optimize.linear_sum_assignment``). ``conf`` is the confusion term alone (the
speaker-labelling error, whatever the chunker did); ``count ok`` the share of files where 'auto' found
the true number of speakers; ``ms/s`` the labelling CPU time (embeddings + clustering) per second of
audio, after a warm-up file (the first call also loads the encoder and librosa's mel filters, ~2-6 s).

Actors 1-8 are the tuning set (``--sweep`` prints DER by ``speaker_threshold`` there); the default
evaluation uses actors 9-18, which the threshold never saw.

    .venv/bin/python -m bench.diarization_bench                 # 3 files per speaker count, actors 9-18
    .venv/bin/python -m bench.diarization_bench --sweep         # thresholds on actors 1-8
    .venv/bin/python -m bench.diarization_bench --quick
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass

import numpy as np

from bench.vad_bench import DATASETS, HOP, SR, reference_speech

TUNE_ACTORS = tuple(range(1, 9))
EVAL_ACTORS = tuple(range(9, 19))


@dataclass
class Conversation:
    samples: np.ndarray
    ref: np.ndarray  # per 10 ms frame: actor number, 0 = no speech
    n_speakers: int


def make_conversations(n_files: int, n_speakers: int, actors: tuple[int, ...], seed: int) -> list[Conversation]:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rows = list(csv.DictReader(open(DATASETS / "ravdess" / "manifest.csv", newline="")))
    present = sorted({int(r["actor"]) for r in rows} & set(actors))
    if len(present) < n_speakers:
        raise SystemExit(f"only actors {present} of {actors[0]}-{actors[-1]} are in {DATASETS}; need {n_speakers}")
    actors = tuple(present)
    out = []
    for _ in range(n_files):
        who = [int(a) for a in rng.choice(actors, n_speakers, replace=False)]
        n_turns = int(rng.integers(max(8, 2 * n_speakers), 13))
        turns = who * 2 + [int(a) for a in rng.choice(who, n_turns - 2 * n_speakers)]
        rng.shuffle(turns)
        parts, labels = [], []
        for a in turns:
            mine = [r for r in rows if int(r["actor"]) == a]
            x, rate = sf.read(str(DATASETS / "ravdess" / mine[int(rng.integers(len(mine)))]["path"]), dtype="float32")
            assert rate == SR
            lab = np.zeros(len(x) // HOP, dtype=np.int32)
            s, e = reference_speech(x)
            lab[s:e] = a
            parts.append(x[:len(lab) * HOP])
            labels.append(lab)
        out.append(Conversation(np.concatenate(parts), np.concatenate(labels), n_speakers))
    return out


def der(ref: np.ndarray, hyp: np.ndarray, collar_s: float = 0.0) -> dict[str, float]:
    """Frame-level DER terms: ``ref`` and ``hyp`` hold a speaker id per 10 ms frame, 0 for no speech.
    Frames within ``collar_s`` of a reference boundary are not scored (NIST md-eval's collar)."""
    from scipy.optimize import linear_sum_assignment

    n = min(len(ref), len(hyp))
    ref, hyp = ref[:n], hyp[:n]
    if collar_s > 0:
        edges = np.flatnonzero(np.diff(ref) != 0) + 1
        scored = np.ones(n, dtype=bool)
        c = int(round(collar_s * 100))
        for e in edges:
            scored[max(0, e - c):e + c] = False
        ref, hyp = ref[scored], hyp[scored]
    total = float((ref > 0).sum())
    miss = float(((ref > 0) & (hyp == 0)).sum())
    fa = float(((ref == 0) & (hyp > 0)).sum())
    both = (ref > 0) & (hyp > 0)
    r_ids, h_ids = np.unique(ref[both]), np.unique(hyp[both])
    matched = 0.0
    if len(r_ids) and len(h_ids):
        overlap = np.zeros((len(r_ids), len(h_ids)))
        ri = np.searchsorted(r_ids, ref[both])
        hi = np.searchsorted(h_ids, hyp[both])
        np.add.at(overlap, (ri, hi), 1)
        rows, cols = linear_sum_assignment(-overlap)
        matched = float(overlap[rows, cols].sum())
    conf = float(both.sum()) - matched
    return {"total": total, "miss": miss, "fa": fa, "conf": conf}


def hypothesis(conv: Conversation, config) -> tuple[np.ndarray, int, float]:
    from pipeline.chunking import chunk_speech
    from pipeline.speakers import assign_speakers

    chunks = chunk_speech(conv.samples, SR, config).chunks
    t = time.process_time()
    spk = assign_speakers(conv.samples, chunks, config)
    cpu = time.process_time() - t
    hyp = np.zeros(len(conv.ref), dtype=np.int32)
    for c, lab in zip(chunks, spk.labels):
        if lab is not None:
            hyp[int(round(c.start_s * 100)):int(round(c.end_s * 100))] = int(lab[1:])
    return hyp, spk.n_speakers, cpu


def evaluate(convs: list[Conversation], config, collar_s: float = 0.25) -> dict[str, float]:
    terms = {"total": 0.0, "miss": 0.0, "fa": 0.0, "conf": 0.0}
    count_ok, cpu, dur = 0, 0.0, 0.0
    for conv in convs:
        hyp, n_found, c = hypothesis(conv, config)
        for k, v in der(conv.ref, hyp, collar_s).items():
            terms[k] += v
        count_ok += int(n_found == conv.n_speakers)
        cpu += c
        dur += len(conv.samples) / SR
    t = terms["total"]
    return {"der": (terms["miss"] + terms["fa"] + terms["conf"]) / t, "miss": terms["miss"] / t,
            "fa": terms["fa"] / t, "conf": terms["conf"] / t, "count_ok": count_ok / len(convs),
            "ms_per_s": cpu / dur * 1000}


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import Config

    parser = argparse.ArgumentParser(prog="python -m bench.diarization_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3, help="files per speaker count (default 3)")
    parser.add_argument("--sweep", action="store_true", help="DER by speaker_threshold on the tuning actors 1-8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--collar", type=float, default=0.25, help="seconds around reference boundaries not "
                        "scored (default 0.25, the usual NIST collar; 0 scores every frame)")
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.3, 0.35, 0.4, 0.45, 0.5],
                        help="--sweep: speaker_threshold values")
    parser.add_argument("--quick", action="store_true", help="1 file per speaker count")
    args = parser.parse_args(argv)
    n_files = 1 if args.quick else args.files
    actors = TUNE_ACTORS if args.sweep else EVAL_ACTORS
    sets = {k: make_conversations(n_files, k, actors, args.seed + k) for k in (2, 3, 4)}
    base = Config()
    hypothesis(sets[2][0], base)  # warm-up: encoder, VAD and mel filters load outside the timings
    print(f"{n_files} file(s) per speaker count, RAVDESS actors {actors[0]}-{actors[-1]}, "
          f"8-12 turns each; DER frame-level, collar {args.collar:g} s")
    print(f"{'speakers':>8} {'mode':>16} {'DER':>6} {'miss':>6} {'FA':>6} {'conf':>6} {'count ok':>8} {'ms/s':>6}")
    if args.sweep:
        modes = [(f"auto t={t:g}", base.replace(speaker_threshold=t)) for t in args.thresholds]
    else:
        modes = [(f"auto t={base.speaker_threshold:g}", base), ("given N", None)]
    for k, convs in sets.items():
        for name, cfg in modes:
            r = evaluate(convs, cfg if cfg is not None else base.replace(speakers=str(k)), args.collar)
            print(f"{k:8d} {name:>16} {r['der']:6.3f} {r['miss']:6.3f} {r['fa']:6.3f} {r['conf']:6.3f} "
                  f"{r['count_ok']:8.2f} {r['ms_per_s']:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
