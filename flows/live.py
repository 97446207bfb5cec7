"""The live session: microphone frames in, analysed utterances out on worker threads, saved at Stop.

Beside ``flows.ingest`` (folders), this is the other way audio enters the warehouse. The stream parts
(resampling, end-pointing, the drop-oldest queue) are in ``pipeline.stream``, the result shapes in
``pipeline.live_results``; this module runs the threads and stores the session. It knows nothing of
Streamlit or WebRTC: ``dashboard/live_page.py`` calls it.

Flow of one session (:class:`LiveSession`):

1. The WebRTC callback calls :meth:`LiveSession.push_frames`; it only buffers: mono, 16 kHz, the
   recording, the end-pointer (``pipeline.stream``). No model runs on the callback thread.
2. Closed utterances go into a :class:`~pipeline.stream.DropOldestQueue` of ``config.live_queue_size``.
   An utterance dropped under overload (``dropped_overload``, shown on the page) is not lost: its audio
   is in the recording, and :meth:`LiveSession.session_result` analyses it at Stop.
3. One worker thread per session takes utterances from the queue and runs the analysis
   (``pipeline.analyze.Analyzer.analyze_signal(..., live=True, one_chunk=True)``: the utterance is one
   chunk, Whisper beam ``live_beam_size``, fast explanations) and appends a
   :class:`~pipeline.live_results.LiveResult`, whose ``latency_s`` is the time from the end-pointer's
   decision (the moment the server knows the utterance ended) to the result being ready. Emotions come
   first; Whisper's words follow on a second thread. The page adds the time until it is drawn
   (``display_latency_s``). Users perceive ``live_silence_ms`` more than that: the end-pointer must
   hear that much silence to decide.

Saving (:func:`save_session`, what Stop does): the recording as FLAC under ``<data_dir>/live/``, and
the session's result (see :meth:`LiveSession.session_result`: the utterance results the user saw,
offset into the recording, plus those dropped under overload or still waiting, analysed once at Stop)
as one warehouse file in one run, both with ``source='live'``, through the warehouse calls the folder
ingestion uses (``start_run``, ``write_result``, ``finish_run``).

Public API: :class:`LiveSession`, :func:`new_session_id`, :func:`warm_up`, :func:`analyse_recording`,
:class:`SavedSession`, :func:`save_session`, :func:`save_in_background`.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from pipeline import SAMPLE_RATE, Config, FileResult
from pipeline.live_results import LiveResult, LiveStats, merge_utterance_results, offset_result, warm_signal
from pipeline.stream import (
    BLOCK_S,
    DropOldestQueue,
    EndPointer,
    StreamResampler,
    Utterance,
    frame_to_mono,
    write_flac,
)

logger = logging.getLogger(__name__)

AnalyzeFn = Callable[..., FileResult]


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def new_session_id(now: datetime | None = None) -> str:
    """'live-YYYYmmdd-HHMMSS-xxxxxx' (UTC time and 6 random hex digits; safe as a file name)."""
    now = now or datetime.now(timezone.utc)
    return f"live-{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


class LiveSession:
    """One microphone session: buffers frames, end-points, analyses utterances on a worker thread.

    Thread use: :meth:`push_frames` / :meth:`push` run on the WebRTC thread and only buffer;
    :meth:`results`, :meth:`stats` and :meth:`stop` may be called from any thread (the page's).

    Args:
        config: settings (``live_*``, chunking padding, model names through ``analyze``).
        analyze: ``analyze(samples, sample_rate, name=..., live=True) -> FileResult``; default the
            Analyzer ``analyzer`` (models load once per process), in two steps: emotions without
            transcripts first (published at once), then Whisper's transcripts filled in
            (``LiveResult.transcribing`` meanwhile). The default takes each utterance as one chunk
            (the end-pointer segmented it; the chunker does not cut it again).
        analyzer: the ``pipeline.analyze.Analyzer`` of the default ``analyze``; default the
            process-wide one for ``config``.
        transcribe: ``transcribe(result, samples_16k) -> FileResult``, the second step for a custom
            ``analyze`` (None: one step).
        session_id: id used for the recording's file name (default :func:`new_session_id`).
        clock: monotonic clock (s) for latencies.
        torch_threads: CPU threads torch uses on the worker thread (a per-thread setting: the rest of
            the process keeps its own); default ``config.live_threads``; 0 leaves torch's default.
    """

    def __init__(self, config: Config, *, analyze: AnalyzeFn | None = None, session_id: str | None = None,
                 clock: Callable[[], float] = time.monotonic, torch_threads: int | None = None,
                 transcribe: Callable[[FileResult, np.ndarray], FileResult] | None = None, analyzer: Any = None):
        self.config = config
        self._analyzer = analyzer
        self._one_chunk = False  # the default analysis: an utterance is one chunk
        self.torch_threads = int(config.live_threads if torch_threads is None else torch_threads)
        self.id = session_id or new_session_id()
        self.created = datetime.now(timezone.utc)
        self.clock = clock
        self._analyze = analyze
        self._transcribe = transcribe
        self._lock = threading.RLock()
        self.endpointer = EndPointer(config, clock=clock)
        self.queue = DropOldestQueue(config.live_queue_size)
        self._resampler: StreamResampler | None = None
        self._recording: list[np.ndarray] = []  # int16 blocks at 16 kHz
        self._n_recorded = 0
        self._frames = 0
        self._results: list[LiveResult] = []
        self._dropped: list[Utterance] = []  # dropped by the overload policy (samples released)
        self._errors: list[tuple[Utterance, str]] = []
        self._word_errors: list[tuple[Utterance, str]] = []
        self._words_q: queue.Queue = queue.Queue()
        self._words_thread: threading.Thread | None = None
        self._busy = False
        self._receiving = True
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.stopped = False
        self.save_lock = threading.Lock()
        """Held by whoever saves the session (the page's Stop and its on-ended hook may race)."""
        self.saved: Any = None
        """What the caller stored when it saved the session (None until saved)."""

    # ---------------------------------------------------------------- analysis function
    def analyze(self, samples: np.ndarray, sample_rate: int, *, name: str, utterance: bool = True) -> FileResult:
        """Analyse an utterance (``utterance``: one chunk) or, with ``utterance=False``, the whole
        recording (chunked as a file is)."""
        if self._analyze is None:
            from pipeline import get_analyzer

            analyzer = self._analyzer or get_analyzer(self.config)
            if analyzer.whisper() is not None:  # emotions first, words in a second step
                self._transcribe = functools.partial(analyzer.add_transcripts, live=True)
                self._analyze = functools.partial(analyzer.analyze_signal, transcribe=False)
            else:
                self._analyze = analyzer.analyze_signal
            self._one_chunk = True
        if self._one_chunk and utterance:
            return self._analyze(samples, sample_rate, name=name, live=True, one_chunk=True)
        return self._analyze(samples, sample_rate, name=name, live=True)

    # ---------------------------------------------------------------- input (WebRTC thread)
    def start(self) -> None:
        """Start the worker thread (idempotent; also started by the first pushed frame)."""
        with self._lock:
            if self._worker is None and not self.stopped:
                self._worker = threading.Thread(target=self._work, name=f"emotivoice-{self.id}", daemon=True)
                self._worker.start()

    def push_frames(self, frames: Iterable[Any]) -> None:
        """Buffer ``av.AudioFrame``-like frames (the WebRTC callback calls this)."""
        for frame in frames:
            samples, rate = frame_to_mono(frame)
            self.push(samples, rate)

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        """Buffer mono float samples at any rate (resampled to 16 kHz, end-pointed, queued)."""
        with self._lock:
            if not self._receiving:
                return
            if self._worker is None:
                self.start()
            self._frames += 1
            if self._resampler is None or self._resampler.in_rate != int(sample_rate):
                if self._resampler is not None:
                    logger.info("live %s: input rate changed %d -> %d Hz", self.id, self._resampler.in_rate,
                                sample_rate)
                    self._ingest(self._resampler.flush())
                self._resampler = StreamResampler(int(sample_rate), SAMPLE_RATE)
            self._ingest(self._resampler.process(samples))

    def _ingest(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        self._recording.append((np.clip(x, -1.0, 1.0) * 32767.0).round().astype(np.int16))
        self._n_recorded += x.size
        for utt in self.endpointer.feed(x):
            self._enqueue(utt)

    def _enqueue(self, utt: Utterance) -> None:
        dropped = self.queue.put(utt)
        if dropped is not None:
            logger.warning("live %s: analysis is behind; dropped utterance %d (%.1f-%.1f s) to keep latency "
                           "bounded (it is analysed at Stop)", self.id, dropped.index, dropped.start_s,
                           dropped.end_s)
            dropped.samples = np.zeros(0, dtype=np.float32)
            self._dropped.append(dropped)

    # ---------------------------------------------------------------- worker thread
    def _work(self) -> None:
        logger.info("live %s: analysis worker started", self.id)
        if self.torch_threads:
            import torch  # per-thread with torch's OpenMP backend: other threads keep their setting

            torch.set_num_threads(int(self.torch_threads))
        while True:
            utt = self.queue.get(timeout=0.05)
            if utt is None:
                if self._stopping.is_set() and len(self.queue) == 0:
                    logger.info("live %s: analysis worker finished", self.id)
                    return
                continue
            logger.debug("live %s: analysing utterance %d (%.2f-%.2f s, %s)", self.id, utt.index, utt.start_s,
                         utt.end_s, utt.reason)
            with self._lock:
                self._busy = True
            try:
                self._analyse_one(utt)
            finally:
                with self._lock:
                    self._busy = False

    def _analyse_one(self, utt: Utterance, *, samples: np.ndarray | None = None) -> LiveResult | None:
        x = utt.samples if samples is None else samples
        try:
            res = self.analyze(x, SAMPLE_RATE, name=f"{self.id}#{utt.index}")
        except Exception as exc:  # shown on the page; the session goes on
            logger.exception("live %s: analysis of utterance %d failed", self.id, utt.index)
            with self._lock:
                self._errors.append((utt, f"{type(exc).__name__}: {exc}"))
            return None
        done = self.clock()
        logger.debug("live %s: utterance %d analysed %.3f s after it closed (stages %s)", self.id, utt.index,
                     done - utt.closed_at, {k: round(v, 3) for k, v in res.timings.items()})
        lr = LiveResult(utterance=utt, result=offset_result(res, utt.start_s), closed_at=utt.closed_at, done_at=done,
                        transcribing=self._transcribe is not None and bool(res.chunks))
        utt.samples = np.zeros(0, dtype=np.float32)  # the recording holds the audio
        with self._lock:
            self._results.append(lr)
        if lr.transcribing:  # words on their own thread: the next utterance's emotions need not wait
            with self._lock:
                if self._words_thread is None:
                    self._words_thread = threading.Thread(target=self._words_work, name=f"emotivoice-words-{self.id}",
                                                          daemon=True)
                    self._words_thread.start()
                self._words_q.put((lr, res, x))
        return lr

    def _words_work(self) -> None:
        if self.torch_threads:
            import torch

            torch.set_num_threads(int(self.torch_threads))
        while True:
            item = self._words_q.get()
            if item is None:
                return
            self._add_transcripts(*item)

    def _finish_words(self, timeout: float | None) -> None:
        """Let the words thread finish what it was given, then end it (a later utterance starts a new one)."""
        with self._lock:
            thread, self._words_thread = self._words_thread, None
        if thread is not None:
            self._words_q.put(None)
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("live %s: transcription still running after %.0f s at stop", self.id, timeout or 0)

    def _add_transcripts(self, lr: LiveResult, res: FileResult, samples: np.ndarray) -> None:
        """Second step: Whisper's words for a published result (the emotions stay if it fails)."""
        try:
            res = self._transcribe(res, samples)
            shifted = offset_result(res, lr.utterance.start_s)
        except Exception as exc:  # shown on the page; the emotions are kept, the session goes on
            logger.exception("live %s: transcription of utterance %d failed", self.id, lr.utterance.index)
            with self._lock:
                self._word_errors.append((lr.utterance, f"transcription: {type(exc).__name__}: {exc}"))
                lr.transcribing = False
            return
        with self._lock:
            lr.result = shifted
            lr.transcribing = False
            lr.transcribed_at = self.clock()

    # ---------------------------------------------------------------- reading (page thread)
    def results(self) -> list[LiveResult]:
        """Snapshot of the analysed utterances, in the order they finished."""
        with self._lock:
            return list(self._results)

    def mark_shown(self, results: Iterable[LiveResult], when: float | None = None) -> None:
        """Record when the page first drew these results (for the on-screen latency)."""
        when = self.clock() if when is None else when
        with self._lock:
            for r in results:
                if r.shown_at is None:
                    r.shown_at = when

    def stats(self) -> LiveStats:
        with self._lock:
            lat = [r.latency_s for r in self._results]
            shown = [r.display_latency_s for r in self._results if r.shown_at is not None]
            words = [r.transcript_latency_s for r in self._results if r.transcribed_at is not None]
            return LiveStats(
                received_s=self._n_recorded / SAMPLE_RATE, frames=self._frames,
                utterances=self.endpointer.closed, analysed=len(self._results), waiting=len(self.queue),
                busy=self._busy, dropped_overload=self.queue.dropped, dropped_short=self.endpointer.dropped_short,
                errors=len(self._errors), in_speech=self.endpointer.in_speech,
                latency_p50_s=_pct(lat, 50), latency_p95_s=_pct(lat, 95),
                display_latency_p50_s=_pct(shown, 50), display_latency_p95_s=_pct(shown, 95),
                last_error=self._errors[-1][1] if self._errors else None,
                transcript_latency_p50_s=_pct(words, 50), transcript_latency_p95_s=_pct(words, 95),
                transcript_errors=len(self._word_errors),
                last_transcript_error=self._word_errors[-1][1] if self._word_errors else None,
            )

    def recording(self) -> np.ndarray:
        """The whole session so far, float32 mono 16 kHz."""
        with self._lock:
            if not self._recording:
                return np.zeros(0, dtype=np.float32)
            return np.concatenate(self._recording).astype(np.float32) / 32767.0

    @property
    def duration_s(self) -> float:
        return self._n_recorded / SAMPLE_RATE

    # ---------------------------------------------------------------- stop and save
    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop receiving, close the open utterance and wait for the worker to finish the queue.

        Args:
            timeout: seconds to wait for the worker; utterances still waiting afterwards are analysed
                by :meth:`session_result`.
        """
        with self._lock:
            if self.stopped:
                return
            self._receiving = False
            if self._resampler is not None:
                self._ingest(self._resampler.flush())
            for utt in self.endpointer.flush():
                self._enqueue(utt)
            self.stopped = True
            worker = self._worker
        self._stopping.set()
        if worker is not None:
            worker.join(timeout)
            if worker.is_alive():
                logger.warning("live %s: analysis still running after %.0f s at stop", self.id, timeout or 0)
        self._finish_words(timeout)

    def session_result(self, name: str | None = None) -> FileResult:
        """The whole session as one FileResult (times into the recording); stops the session first.

        Utterances dropped by the overload policy or still waiting are analysed now, from the recording.
        With no utterance at all, the recording itself is analysed once (normally: no speech found).

        Args:
            name: the ``file`` of the result (the saved recording's path); default the session id.
        """
        self.stop()
        name = name or self.id
        audio = self.recording()
        with self._lock:
            catch_up = sorted(self._dropped + [u for u in self.queue.drain()], key=lambda u: u.index)
            self._dropped = []
        for utt in catch_up:
            a, b = int(round(utt.start_s * SAMPLE_RATE)), int(round(utt.end_s * SAMPLE_RATE))
            self._analyse_one(utt, samples=audio[a:b])
        self._finish_words(60.0)
        results = sorted(self.results(), key=lambda r: r.utterance.start_s)
        cfg = self.config
        segmentation = {"live_silence_ms": cfg.live_silence_ms, "live_max_utterance_s": cfg.live_max_utterance_s,
                        "live_min_utterance_s": cfg.live_min_utterance_s}
        if not results:
            res = self.analyze(audio, SAMPLE_RATE, name=name, utterance=False)
            if self._transcribe is not None and res.chunks:
                try:
                    res = self._transcribe(res, audio)
                except Exception as exc:  # keep the emotions; say why the words are missing
                    logger.exception("live %s: transcription of the recording failed", self.id)
                    res.notes.append(f"transcription failed: {type(exc).__name__}: {exc}")
            res.file, res.sample_rate, res.channels = name, SAMPLE_RATE, 1
            res.settings = {**res.settings, "live_segmentation": segmentation}
            res.notes.append("live session: no utterance was end-pointed; the recording was analysed whole")
            return res
        stats = self.stats()
        notes = [f"live session: {len(results)} utterance(s) analysed"
                 + (f", {len(catch_up)} of them at stop (analysis had fallen behind)" if catch_up else "")
                 + (f"; {stats.dropped_short} blip(s) under {cfg.live_min_utterance_s:g} s ignored"
                    if stats.dropped_short else "")]
        if self._errors:
            notes.append(f"live session: {len(self._errors)} utterance(s) failed to analyse: {self._errors[-1][1]}")
        if self._word_errors:
            notes.append(f"live session: words missing for {len(self._word_errors)} utterance(s) (emotions kept): "
                         f"{self._word_errors[-1][1]}")
        unfinished = sum(r.transcribing for r in results)
        if unfinished:
            notes.append(f"live session: words missing for {unfinished} utterance(s): transcription had not "
                         "finished when the session was saved")
        settings = {**results[0].result.settings, "live_segmentation": segmentation}
        return merge_utterance_results([r.result for r in results], name=name, duration_s=self.duration_s,
                                       extra_notes=notes, settings=settings)

    def save_recording(self, path: str | Path) -> Path:
        """Write the recording as 16 kHz mono 16-bit FLAC.

        Raises:
            ValueError: nothing was recorded.
        """
        return write_flac(self.recording(), path)


def warm_up(analyze: AnalyzeFn, *, torch_threads: int | None = None) -> float:
    """Analyse one synthetic second so that first-use costs are paid before the first utterance.

    The first analysis in a process imports the explanation and feature libraries and compiles their
    kernels (tens of seconds on a busy 2-core machine); without this the first live result would wait
    for it. Runs on a separate thread with the worker's torch thread setting. Returns seconds taken.
    """
    t0 = time.perf_counter()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            if torch_threads:
                import torch

                torch.set_num_threads(int(torch_threads))
            analyze(warm_signal(), SAMPLE_RATE, name="warm-up", live=True)
        except Exception as exc:  # reported by the first real utterance as well
            errors.append(exc)

    th = threading.Thread(target=run, name="emotivoice-live-warm-up", daemon=True)
    th.start()
    th.join()
    if errors:
        logger.warning("live warm-up failed: %s", errors[0])
    return time.perf_counter() - t0


def analyse_recording(samples: np.ndarray, sample_rate: int, config: Config, *, analyze: AnalyzeFn | None = None,
                      session_id: str | None = None, frame_s: float = BLOCK_S) -> LiveSession:
    """Run a finished recording through a live session, as if it had streamed in (the fallback path).

    The samples are pushed in ``frame_s`` pieces, so end-pointing, the queue and the analysis are
    exactly the live ones; returns the stopped session (its results are all in).

    Args:
        samples: mono float samples in [-1, 1] (mix to mono first).
        sample_rate: their rate (Hz).
        config: settings.
        analyze: the analysis function (default: the process-wide Analyzer's, as the stream's).
        session_id: id of the session (default a new one).
        frame_s: piece length (s).
    """
    analyzer = None
    if analyze is None:  # the process-wide Analyzer of this configuration (not of the enlarged queue's)
        from pipeline import get_analyzer

        analyzer = get_analyzer(config)
    # an offline clip may be analysed as fast as the machine goes: make room for every utterance
    n = len(samples)
    duration = n / float(sample_rate)
    room = int(duration / max(0.1, config.live_min_utterance_s)) + 2
    session = LiveSession(config.replace(live_queue_size=max(config.live_queue_size, room)), analyze=analyze,
                          session_id=session_id, analyzer=analyzer)
    step = max(1, int(round(frame_s * sample_rate)))
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    for i in range(0, n, step):
        session.push(x[i:i + step], sample_rate)
    session.stop(timeout=None)
    return session


# --------------------------------------------------------------------------------------------------
# Saving (what Stop does)
# --------------------------------------------------------------------------------------------------

@dataclass
class SavedSession:
    """What Stop stored."""

    session_id: str
    path: Path
    """The recording: 16 kHz mono 16-bit FLAC under ``<data_dir>/live/``."""
    sha256: str
    result: FileResult
    stored: bool
    """Whether the result reached the warehouse."""
    warehouse_error: str | None = None
    file_id: int | None = None
    """The warehouse's file_id of the session (when stored)."""


def _write_warehouse(config: Config, session: LiveSession, path: Path, sha256: str, result: FileResult,
                     settings_key: str) -> int:
    """Store the session as one run (source 'live') holding one file (source 'live'); returns file_id."""
    from warehouse import Warehouse

    wh = Warehouse(config.db)
    stats = session.stats()
    run_id = wh.start_run(config.to_json(), source="live")
    try:
        file_id = wh.write_result(str(path), sha256, result, settings_key=settings_key, run_id=run_id,
                                  source="live", recorded_at=session.created.replace(tzinfo=None))
    except Exception:
        wh.finish_run(run_id, "failed", summary={"session": session.id})
        raise
    wh.finish_run(run_id, "completed", summary={
        "session": session.id, "utterances": stats.analysed, "dropped_overload": stats.dropped_overload,
        "dropped_short": stats.dropped_short, "latency_p50_s": stats.latency_p50_s,
        "latency_p95_s": stats.latency_p95_s})
    return file_id


def save_session(session: LiveSession, config: Config) -> SavedSession:
    """Stop the session and store it: the recording as FLAC, its result as one warehouse file.

    Saved once: later calls (Stop's rerun and the stream's on-ended hook may both call this) return
    the first call's SavedSession. The stored result is the concatenation of the utterance results
    (times offset into the recording; utterances dropped under overload are analysed now), see
    ``LiveSession.session_result``.

    Raises:
        ValueError: nothing was recorded.
    """
    from pipeline import file_sha256, settings_key

    with session.save_lock:
        if session.saved is not None:
            return session.saved
        session.stop()
        path = (config.data_path / "live" / f"{session.id}.flac").resolve()
        session.save_recording(path)
        result = session.session_result(name=str(path))
        sha = file_sha256(path)
        key = settings_key(result.settings)
        try:
            file_id = _write_warehouse(config, session, path, sha, result, key)
        except Exception as exc:  # the recording is safe on disk; say why the table write failed
            logger.exception("live %s: saving the result to the warehouse %s failed", session.id, config.db)
            saved = SavedSession(session.id, path, sha, result, stored=False,
                                 warehouse_error=f"{type(exc).__name__}: {exc}")
        else:
            logger.info("live %s saved: %s (%d chunks) into %s", session.id, path, len(result.chunks), config.db)
            saved = SavedSession(session.id, path, sha, result, stored=True, file_id=file_id)
        session.saved = saved
        return saved


def save_in_background(session: LiveSession, config: Config) -> None:
    """The stream ended (Stop, a closed tab, a dropped connection): save without waiting for a rerun."""

    def run() -> None:
        try:
            if session.stats().frames:
                save_session(session, config)
        except Exception:
            logger.exception("live %s: saving after the stream ended failed", session.id)

    threading.Thread(target=run, name=f"emotivoice-save-{session.id}", daemon=True).start()
