"""Results of a live stream: one analysed utterance, the session's counters, the merge into one saved
result, and the shaping of results for display (pure; ``flows.live`` makes them, the page draws them).

Saving (``merge_utterance_results``): the saved result of a session is the concatenation of its
utterance results with chunk and word times offset into the whole recording (:func:`offset_result`),
so every chunk time points into the saved 16 kHz mono FLAC.

Public API: :class:`LiveResult`, :class:`LiveStats`, :func:`offset_result`,
:func:`merge_utterance_results`, :class:`TranscriptLine`, :func:`timeline_rows`,
:func:`transcript_lines`, :func:`warm_signal`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.stream import Utterance
from pipeline.types import BASE_EMOTIONS, FileResult


@dataclass
class LiveResult:
    """The analysis of one utterance, with chunk times already offset into the session."""

    utterance: Utterance
    result: FileResult
    """Chunk and word times in seconds from the session start."""
    closed_at: float
    done_at: float
    shown_at: float | None = None
    """``time.monotonic()`` when the page first drew it (set by the page)."""
    transcribing: bool = False
    """True while Whisper is still working on it (emotions first, words after)."""
    transcribed_at: float | None = None
    """When its transcripts were filled in (None: not transcribed in a second step)."""

    @property
    def latency_s(self) -> float:
        """End-pointer decision -> result ready (s)."""
        return self.done_at - self.closed_at

    @property
    def transcript_latency_s(self) -> float | None:
        """End-pointer decision -> transcripts ready (s); None unless transcribed in a second step."""
        return None if self.transcribed_at is None else self.transcribed_at - self.closed_at

    @property
    def display_latency_s(self) -> float | None:
        """End-pointer decision -> result on screen (s); None until drawn."""
        return None if self.shown_at is None else self.shown_at - self.closed_at


@dataclass
class LiveStats:
    """Counters of a session, for the page."""

    received_s: float
    frames: int
    utterances: int
    analysed: int
    waiting: int
    busy: bool
    dropped_overload: int
    dropped_short: int
    errors: int
    in_speech: bool
    latency_p50_s: float | None
    latency_p95_s: float | None
    display_latency_p50_s: float | None
    display_latency_p95_s: float | None
    last_error: str | None = None
    transcript_latency_p50_s: float | None = None
    transcript_latency_p95_s: float | None = None
    transcript_errors: int = 0
    """Utterances whose words failed (their emotions were kept)."""
    last_transcript_error: str | None = None


def offset_result(result: FileResult, offset_s: float) -> FileResult:
    """A copy of ``result`` with chunk and word times shifted by ``offset_s`` seconds."""
    out = copy.deepcopy(result)
    for c in out.chunks:
        c.start_s = round(c.start_s + offset_s, 3)
        c.end_s = round(c.end_s + offset_s, 3)
        for w in c.words:
            w.start_s = round(w.start_s + offset_s, 3)
            w.end_s = round(w.end_s + offset_s, 3)
    return out


def merge_utterance_results(results: Iterable[FileResult], *, name: str, duration_s: float,
                            extra_notes: Sequence[str] = (), settings: dict[str, Any] | None = None) -> FileResult:
    """One FileResult from results already offset into the same recording.

    Chunks are sorted by start time and renumbered; notes are de-duplicated in order; timings summed.

    Args:
        results: per-utterance results (chunk times in seconds from the recording start).
        name: the ``file`` of the merged result (the saved recording's path).
        duration_s: the recording's duration (s).
        extra_notes: notes to add (e.g. how the session was segmented).
        settings: settings to store (default: the first result's).

    Raises:
        ValueError: no results to merge (analyse the recording itself instead).
    """
    results = list(results)
    if not results:
        raise ValueError(f"live session {name}: no utterance results to merge")
    chunks = sorted((copy.deepcopy(c) for r in results for c in r.chunks), key=lambda c: (c.start_s, c.end_s))
    for i, c in enumerate(chunks):
        c.idx = i
    notes: list[str] = []
    for r in results:
        for n in r.notes:
            if n not in notes and not n.startswith("silence only"):
                notes.append(n)
    if not chunks:
        notes.append("silence only: no speech chunks found")
    notes.extend(n for n in extra_notes if n not in notes)
    timings: dict[str, float] = {}
    for r in results:
        for k, v in r.timings.items():
            timings[k] = timings.get(k, 0.0) + float(v)
    first = results[0]
    return FileResult(
        file=name, duration_s=round(duration_s, 3), sample_rate=SAMPLE_RATE, channels=1,
        models=copy.deepcopy(first.models), chunks=chunks,
        settings=copy.deepcopy(settings if settings is not None else first.settings),
        notes=notes, timings=timings,
    )


# --------------------------------------------------------------------------------------------------
# Shaping results for display (pure; the page draws them)
# --------------------------------------------------------------------------------------------------

@dataclass
class TranscriptLine:
    start_s: float
    end_s: float
    text: str | None
    dominant: str | None
    confidence: float | None
    granular: list[str]
    complex: list[str]
    pending: bool = False
    """Whisper is still transcribing it."""


def timeline_rows(results: Iterable[LiveResult]) -> list[dict[str, Any]]:
    """Long-form rows (time_s = chunk middle in the session, emotion, probability) for a rolling chart.

    Emotions the model does not have (None) are left out rather than drawn as zero.
    """
    rows = []
    for r in results:
        for c in r.result.chunks:
            mid = round((c.start_s + c.end_s) / 2, 3)
            for e in BASE_EMOTIONS:
                p = c.base.get(e)
                if p is not None:
                    rows.append({"time_s": mid, "start_s": c.start_s, "end_s": c.end_s, "emotion": e,
                                 "probability": float(p)})
    return rows


def transcript_lines(results: Iterable[LiveResult]) -> list[TranscriptLine]:
    """One line per analysed chunk, in time order, tagged with its emotions."""
    lines = []
    for r in results:
        for c in r.result.chunks:
            conf = c.base.get(c.dominant) if c.dominant else None
            lines.append(TranscriptLine(
                start_s=c.start_s, end_s=c.end_s, text=c.transcript, dominant=c.dominant,
                confidence=None if conf is None else float(conf),
                granular=[g.name for g in c.granular], complex=[x.name for x in c.complex],
                pending=r.transcribing,
            ))
    return sorted(lines, key=lambda ln: ln.start_s)


def warm_signal(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    """A synthetic speech-like sound at 16 kHz: voiced 200 ms syllables (150 Hz and harmonics) under a
    raised-cosine envelope over a -70 dBFS noise floor, with 0.2 s of that floor around it (so that the
    chunker, which wants level changes, finds one chunk in it)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    voiced = sum(np.sin(2 * np.pi * k * 150.0 * t) / k for k in range(1, 8))
    syllable = int(0.2 * SAMPLE_RATE)
    env = np.zeros(n)
    for start in range(0, n - syllable, int(0.25 * SAMPLE_RATE)):
        env[start:start + syllable] = np.hanning(syllable)
    x = 0.2 * env * voiced / np.max(np.abs(voiced))
    pad = np.zeros(SAMPLE_RATE // 5)
    x = np.concatenate([pad, x, pad])
    return (x + rng.standard_normal(x.size) * 10 ** (-70 / 20)).astype(np.float32)
