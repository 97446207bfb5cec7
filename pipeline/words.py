"""Whisper's words and the speech chunks: packing the chunks' audio for Whisper, and placing words in chunks.

Used by :func:`pipeline.transcribe.transcribe_chunks` ("windows" strategy): :func:`pack_speech` joins the
chunks' samples with their pauses cut short, :meth:`PackedSpeech.to_file_time` maps the words Whisper heard
back to file time, :func:`assign_words` hands each chunk the words whose midpoint lies in it, and
:func:`wordless_stretches` finds the speech Whisper left without a word (decoded again on its own).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.types import Chunk, Word

#: A word whose midpoint lies in a gap between chunks goes to the nearest chunk within this many
#: seconds (Whisper's word timestamps jitter by about a tenth of a second); farther ones are dropped.
EDGE_TOLERANCE_S = 0.3
#: A stretch of a speech chunk at least this long without a word (trained models, "windows" strategy)
#: is decoded again on its own. Chunks end at 0.5 s of silence, so speech rarely pauses this long inside
#: one; a wordless stretch there is a window Whisper cut short.
REPAIR_GAP_S = 2.0
#: A whole speech chunk at least this long that got no word is decoded again on its own: Whisper skips
#: short utterances inside a window, e.g. the 2nd and 4th of four repeats of one sentence in
#: examples/audio/session_actor03.flac came back empty.
REPAIR_CHUNK_S = 0.5
#: Longest pause kept between two chunks when their audio is packed for Whisper; longer pauses are cut to
#: this much silence. Chosen by ``python -m bench.transcript_attribution`` over 0.3, 1 and 2 s: 2 s put the
#: fewest words in the wrong chunk, on average and in the worst conversation (docs/benchmarks.md).
PACK_GAP_S = 2.0


def clip_word(w: Word, chunk: Chunk) -> Word:
    """``w`` with its times clipped to ``chunk`` (rounded to the millisecond)."""
    start = min(max(w.start_s, chunk.start_s), chunk.end_s)
    end = min(max(w.end_s, start), chunk.end_s)
    return Word(word=w.word, start_s=round(start, 3), end_s=round(end, 3), probability=w.probability)


def nearest_chunk(t: float, starts: Sequence[float], ends: Sequence[float]) -> tuple[int, float]:
    """(index, distance in s) of the span ``[starts[i], ends[i]]`` nearest to time ``t`` (0 inside it; the
    earlier span on a tie; (-1, inf) without spans). The spans are in time order and do not overlap, as the
    chunker makes them: a binary search, so placing an hour's words costs milliseconds, not seconds."""
    n = len(starts)
    if n == 0:
        return -1, math.inf
    i = bisect.bisect_left(starts, t) - 1  # the last span starting before t
    if i >= 0 and t <= ends[i]:
        return i, 0.0
    before = (i, t - ends[i]) if i >= 0 else None
    after = (i + 1, starts[i + 1] - t) if i + 1 < n else None
    if after is None or (before is not None and before[1] <= after[1]):
        return before
    return after


@dataclass
class PackedSpeech:
    """The chunks' audio back to back, pauses cut to at most ``PACK_GAP_S`` of silence: what Whisper's 30 s
    windows are spent on (long silences cost encoder passes and tell nothing). ``starts[i]`` is where chunk
    ``i`` begins in ``audio`` (seconds)."""

    audio: np.ndarray
    chunks: list[Chunk]
    starts: np.ndarray

    def to_file_time(self, words: Sequence[Word]) -> list[Word]:
        """Words timed in ``audio`` -> timed in the file, each placed by its midpoint in the chunk holding it,
        or the nearest one (Whisper starts words early, in the silence before them); clipped to that chunk."""
        starts = self.starts.tolist()
        ends = [a + (c.end_s - c.start_s) for a, c in zip(starts, self.chunks)]
        out = []
        for w in words:
            i, _ = nearest_chunk(0.5 * (w.start_s + w.end_s), starts, ends)
            shift = self.chunks[i].start_s - float(self.starts[i])
            out.append(clip_word(Word(word=w.word, start_s=w.start_s + shift, end_s=w.end_s + shift,
                                      probability=w.probability), self.chunks[i]))
        return out


def pack_speech(samples: np.ndarray, chunks: Sequence[Chunk], max_gap_s: float = PACK_GAP_S) -> PackedSpeech:
    """The chunks' samples in order, the pause between two chunks shortened to at most ``max_gap_s`` of
    silence (see :class:`PackedSpeech`)."""
    parts, starts, at = [], [], 0
    for i, c in enumerate(chunks):
        part = samples[int(c.start_s * SAMPLE_RATE):int(c.end_s * SAMPLE_RATE)]
        if i:
            pause = min(max(c.start_s - chunks[i - 1].end_s, 0.0), max_gap_s)
            parts.append(np.zeros(int(round(pause * SAMPLE_RATE)), dtype=np.float32))
            at += parts[-1].size
        starts.append(at / SAMPLE_RATE)
        parts.append(part)
        at += part.size
    audio = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    return PackedSpeech(audio=audio, chunks=list(chunks), starts=np.asarray(starts, dtype=np.float64))


def assign_words(words: Sequence[Word], chunks: Sequence[Chunk],
                 tolerance_s: float = EDGE_TOLERANCE_S) -> list[list[Word]]:
    """Give each chunk the words whose midpoint lies inside it (times clipped to the chunk).

    A midpoint in a gap goes to the nearest chunk when it is at most ``tolerance_s`` away; words
    farther from every chunk (Whisper hearing something in the silence between chunks) are dropped.
    """
    out: list[list[Word]] = [[] for _ in chunks]
    starts, ends = [c.start_s for c in chunks], [c.end_s for c in chunks]
    for w in words:
        i, d = nearest_chunk(0.5 * (w.start_s + w.end_s), starts, ends)
        if i >= 0 and d <= tolerance_s:
            out[i].append(clip_word(w, chunks[i]))
    return out


def wordless_stretches(chunks: Sequence[Chunk], per_chunk_words: Sequence[Sequence[Word]],
                       min_gap_s: float = REPAIR_GAP_S,
                       min_chunk_s: float = REPAIR_CHUNK_S) -> list[tuple[float, float]]:
    """Stretches inside speech chunks with no word in them: a whole chunk of at least ``min_chunk_s`` that
    got no word, or a stretch of at least ``min_gap_s`` at a chunk's start, between its words or at its end."""
    out: list[tuple[float, float]] = []
    for c, ws in zip(chunks, per_chunk_words):
        if not ws:
            if c.end_s - c.start_s >= min_chunk_s:
                out.append((c.start_s, c.end_s))
            continue
        t = c.start_s
        for w in ws:
            if w.start_s - t >= min_gap_s:
                out.append((t, w.start_s))
            t = max(t, w.end_s)
        if c.end_s - t >= min_gap_s:
            out.append((t, c.end_s))
    return out
