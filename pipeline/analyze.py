"""One entry point: ``analyze_file`` / ``analyze_signal`` chain every stage on one code path.

decode -> chunk (voice activity, or energy) -> speakers -> emotions (batched) -> granular/complex ->
transcript (Whisper's own 30 s windows) -> acoustic features -> explanations. The live tab, the CLI and
the ingestion flow all call these functions; models load once per process and model set
(``pipeline.model_cache``), whatever the chunking or explanation settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import taxonomy
from pipeline.config import Config, load_config
from pipeline.runtime import SAMPLE_RATE
from pipeline.types import (
    BASE_EMOTIONS,
    Chunk,
    ChunkResult,
    EmotionModel,
    FileResult,
    ModelInfo,
)

logger = logging.getLogger(__name__)

#: Bump when a change of code alters stored results (part of the idempotency key).
PIPELINE_VERSION = "2"  # 2: Whisper decodes the chunks' speech packed (pipeline.words.pack_speech)


def settings_for(config: Config, emotion_name: str, whisper_name: str | None, *, live: bool = False,
                 quantized: str | None = None) -> dict[str, Any]:
    """The settings that shape results; their hash decides whether a file must be re-analysed.

    ``quantized``: what the loaded emotion model actually runs ('int8' or 'none'; ``config.quantize`` is
    only the request, e.g. 'auto', which means int8 on a CPU and none on a GPU).
    """
    return {
        "pipeline_version": PIPELINE_VERSION,
        "emotion_model": emotion_name,
        "whisper_model": whisper_name,
        "language": config.language,
        "beam_size": config.live_beam_size if live else config.beam_size,
        "explain": config.explain,
        "explain_budget": config.explain_budget if config.explain == "full" else None,
        "quantize": quantized if quantized is not None else config.quantize,
        "chunking": {
            "silence_threshold_db": config.silence_threshold_db,
            "min_silence_ms": config.min_silence_ms,
            "keep_silence_ms": config.keep_silence_ms,
            "min_chunk_s": config.min_chunk_s,
            "max_chunk_s": config.max_chunk_s,
            "chunker": config.chunker,
            "vad_threshold": config.vad_threshold if config.chunker == "vad" else None,
            "vad_min_speech_ms": config.vad_min_speech_ms if config.chunker == "vad" else None,
        },
        "speakers": None if live or str(config.speakers).strip().lower() == "none" else {
            "speakers": str(config.speakers).strip().lower(),
            "max_speakers": config.max_speakers,
            "speaker_threshold": config.speaker_threshold,
        },
    }


def settings_key(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def base_scores(model: EmotionModel, probs: np.ndarray) -> tuple[dict[str, float | None], dict[str, float]]:
    """Split one row of model probabilities into the six canonical (None = absent) and extra labels."""
    by_label = {lab: float(p) for lab, p in zip(model.labels, probs)}
    base = {e: by_label.get(e) for e in BASE_EMOTIONS}
    extra = {lab: p for lab, p in by_label.items() if lab not in BASE_EMOTIONS}
    return base, extra


@dataclass
class Analyzer:
    """Holds a configuration; ``analyze_*`` are safe to call repeatedly, from several threads.

    The models come from the process-wide :mod:`pipeline.model_cache`, shared by every Analyzer whose
    configuration has the same model settings and dropped with their set when the cache is full, so an
    Analyzer holds no model between calls (unless one is pinned by assigning ``emotion_model``).
    """

    config: Config = field(default_factory=load_config)

    def __post_init__(self) -> None:
        self._pinned_emotion: EmotionModel | None = None

    # --- models (shared, loaded once per model set)
    def _models(self):
        from pipeline.model_cache import models_for

        return models_for(self.config)

    def emotion(self) -> EmotionModel:
        return self._pinned_emotion if self._pinned_emotion is not None else self._models().emotion()

    def whisper(self) -> Any:
        return self._models().whisper()[1]

    @property
    def emotion_model(self) -> EmotionModel | None:
        """The emotion model if loaded already (loads nothing); None before the first :meth:`emotion`."""
        return self._pinned_emotion if self._pinned_emotion is not None else self._models().emotion_loaded

    @emotion_model.setter
    def emotion_model(self, model: EmotionModel | None) -> None:
        """Pin an already loaded model to this Analyzer (it then bypasses the shared cache for emotions)."""
        self._pinned_emotion = model

    @property
    def whisper_model(self) -> Any:
        """The loaded Whisper, or None (not loaded yet, or transcription off)."""
        return self._models().peek_whisper()[1]

    @property
    def whisper_name(self) -> str | None:
        """The transcriber's label once :meth:`whisper` ran (None before, and when transcription is off)."""
        return self._models().peek_whisper()[0]

    @property
    def _whisper_loaded(self) -> bool:
        return self._models().whisper_loaded

    def model_info(self) -> ModelInfo:
        model = self.emotion()
        whisper_name, _ = self._models().whisper()
        return ModelInfo(
            emotion=model.name,
            emotion_trained=bool(model.trained),
            whisper=whisper_name,
            emotion_labels=tuple(model.labels),
            absent_labels=tuple(model.absent_labels),
        )

    def settings(self, *, live: bool = False) -> dict[str, Any]:
        info = self.model_info()
        return settings_for(self.config, info.emotion, info.whisper, live=live,
                            quantized=getattr(self.emotion(), "quantized", "none"))

    # --- analysis
    def analyze_file(self, path: str | Path, *, progress: Callable[[str], None] | None = None) -> FileResult:
        """Decode and analyse one file.

        Raises:
            AudioError: the file cannot be decoded (its name and a plain reason).
            ModelUnavailableError: a configured model is missing (which one, and how to get it).
        """
        from pipeline.isolate import decode_file

        t0 = time.perf_counter()
        audio = decode_file(path, self.config)  # in a child process unless config.decode_isolation is off
        decode_s = time.perf_counter() - t0  # decoding only: models load later, inside analyze_signal
        result = self.analyze_signal(audio.samples, audio.sample_rate, name=str(path), progress=progress)
        result.sample_rate = audio.source_sample_rate
        result.channels = audio.channels
        result.timings["decode_s"] = decode_s
        return result

    def analyze_signal(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, *, name: str = "<signal>",
                       live: bool = False, progress: Callable[[str], None] | None = None,
                       transcribe: bool = True, one_chunk: bool = False) -> FileResult:
        """Analyse a mono signal (any sample rate; resampled to 16 kHz).

        Args:
            samples: mono float samples in [-1, 1].
            sample_rate: their rate in Hz.
            name: what to call the signal in results and messages.
            live: use the live settings (Whisper beam ``live_beam_size``, fast explanations).
            transcribe: False leaves the transcripts empty, to be filled by :meth:`add_transcripts`
                (the live tab shows emotions first, words when Whisper is done).
            one_chunk: the signal is already one stretch of speech (the live end-pointer's utterance):
                analyse it whole as one chunk instead of running the chunker on it again.
        """
        cfg = self.config
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if sample_rate != SAMPLE_RATE:
            import librosa

            samples = librosa.resample(samples, orig_sr=sample_rate, target_sr=SAMPLE_RATE).astype(np.float32)
        duration = len(samples) / SAMPLE_RATE
        timings: dict[str, float] = {}
        notes: list[str] = []
        say = progress or (lambda msg: None)

        from pipeline.chunking import chunk_speech

        t = time.perf_counter()
        if one_chunk:
            chunks: list[Chunk] = [Chunk(0.0, duration)] if samples.size else []
        else:
            chunking = chunk_speech(samples, SAMPLE_RATE, cfg)
            chunks = chunking.chunks
            if chunking.note:
                notes.append(chunking.note)
        timings["chunk_s"] = time.perf_counter() - t
        model = self.emotion()
        info = self.model_info()
        if not chunks:
            notes.append("silence only: no speech chunks found")
        if not model.trained:
            notes.append(f"emotion model {model.name} is untrained (random weights): scores are not emotions")
        whisper = self.whisper()
        if whisper is not None and getattr(whisper, "emotivoice_trained", True) is False:
            notes.append(f"Whisper checkpoint {info.whisper} is untrained (random weights): transcripts are noise")

        signals = [samples[int(c.start_s * SAMPLE_RATE):int(c.end_s * SAMPLE_RATE)] for c in chunks]

        tier = "fast" if live and cfg.explain == "full" else cfg.explain
        say("emotions")
        t = time.perf_counter()
        # Attention maps come from the same forward pass as the frames (not in live mode: the latency
        # budget is for the emotion path; the Explain page computes them on demand).
        want_attention = tier != "none" and not live  # a model without attention gets a note saying so
        probs, frames, attentions = self._emotions(model, signals, keep_frames=tier != "none",
                                                   attention=want_attention and model.has_attention)
        timings["emotion_s"] = time.perf_counter() - t

        say("transcripts")
        t = time.perf_counter()
        transcripts = self._transcripts(samples, chunks, live=live) if transcribe else [None] * len(chunks)
        timings["transcribe_s"] = time.perf_counter() - t

        say("features")
        t = time.perf_counter()
        from pipeline.features import feature_tracks

        tracks = [feature_tracks(s, SAMPLE_RATE) for s in signals]
        features = [tr.summarize().values for tr in tracks]
        timings["features_s"] = time.perf_counter() - t

        say("speakers")
        t = time.perf_counter()
        speakers = self._speakers(samples, chunks, live=live)
        if speakers.note:
            notes.append(speakers.note)
        timings["speakers_s"] = time.perf_counter() - t

        chunk_results: list[ChunkResult] = []
        for i, (c, p) in enumerate(zip(chunks, probs)):
            base, extra = base_scores(model, p)
            tr = transcripts[i]
            chunk_results.append(ChunkResult(
                idx=i, start_s=round(c.start_s, 3), end_s=round(c.end_s, 3),
                base=base, extra=extra,
                dominant=taxonomy.dominant_emotion(base),
                granular=taxonomy.granular_emotions(base),
                complex=taxonomy.complex_emotions(base),
                transcript=None if tr is None else tr.text,
                language=None if tr is None else tr.language,
                language_probability=None if tr is None else tr.language_probability,
                words=[] if tr is None else list(tr.words),
                features=features[i],
                speaker=speakers.labels[i],
            ))

        if tier != "none" and chunk_results:
            say("explanations")
            t = time.perf_counter()
            from pipeline.explain import explain_batch

            exps = explain_batch(model, signals, config=cfg, tier=tier, frames=frames, tracks=tracks,
                                 seeds=[r.idx for r in chunk_results], sample_key=name,
                                 attention=want_attention, attention_results=attentions)
            for res, exp in zip(chunk_results, exps):
                res.explanation = exp
            timings["explain_s"] = time.perf_counter() - t

        settings = settings_for(cfg, info.emotion, info.whisper, live=live,
                                quantized=getattr(model, "quantized", "none"))
        if one_chunk:  # the chunker's settings did not shape this result: the caller segmented it
            settings["chunking"] = {"one_chunk": True}
        return FileResult(
            file=name, duration_s=round(duration, 3), sample_rate=SAMPLE_RATE, channels=1, models=info,
            chunks=chunk_results, settings=settings, notes=notes, timings=timings,
        )

    def _speakers(self, samples: np.ndarray, chunks: list[Chunk], *, live: bool):
        """Per-chunk speaker labels (``pipeline.speakers``); none in live mode, where each utterance is
        analysed on its own and labels would not carry from one to the next."""
        from pipeline.speakers import Speakers, assign_speakers

        if live:
            return Speakers([None] * len(chunks), "none")
        return assign_speakers(samples, chunks, self.config)

    def _transcripts(self, samples: np.ndarray, chunks: list[Chunk], *, live: bool) -> list:
        """Whisper's transcript of each chunk (None each when transcription is off)."""
        whisper = self.whisper()
        if whisper is None or not chunks:
            return [None] * len(chunks)
        from pipeline.transcribe import transcribe_chunks

        return transcribe_chunks(whisper, samples, chunks, language=self.config.language,
                                 beam_size=self.config.live_beam_size if live else self.config.beam_size)

    def add_transcripts(self, result: FileResult, samples: np.ndarray, *, live: bool = False) -> FileResult:
        """Fill the transcripts of a result made with ``transcribe=False`` (in place; also returned).

        ``samples``: the analysed signal at 16 kHz (chunk times are seconds from its start).
        """
        t = time.perf_counter()
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        chunks = [Chunk(c.start_s, c.end_s) for c in result.chunks]
        for c, tr in zip(result.chunks, self._transcripts(samples, chunks, live=live)):
            if tr is not None:
                c.transcript, c.language, c.language_probability = tr.text, tr.language, tr.language_probability
                c.words = list(tr.words)
        result.timings["transcribe_s"] = time.perf_counter() - t
        return result

    def _emotions(self, model: EmotionModel, signals: list[np.ndarray], *, keep_frames: bool,
                  attention: bool = False
                  ) -> tuple[np.ndarray, list[np.ndarray] | None, list[tuple | None] | None]:
        """Class probabilities per chunk; with ``keep_frames`` also the encoder frames, computed once, and
        with ``attention`` the attention maps of that same forward pass, reduced (``attention_maps``).

        Every model pools frames by their mean before its head, so ``head_proba(mean(frames))`` *is* the
        prediction: the explanations reuse the frames instead of running the encoder a second time.
        """
        if not signals:
            return np.zeros((0, len(model.labels)), dtype=np.float32), [], None
        if keep_frames:
            if attention:  # each chunk's maps reduced right away (full-size maps of a file would pile up)
                from pipeline.attention import frames_and_reduced_attention

                frames, maps = frames_and_reduced_attention(model, signals, int(self.config.attention_size))
            else:
                frames = [np.asarray(model.frame_features(s)) for s in signals]
                maps = None
            pooled = np.stack([f.mean(0) for f in frames])
            return np.asarray(model.head_proba(pooled)), frames, maps
        bs = max(1, self.config.batch_size)
        probs = np.concatenate([model.predict_proba(signals[i:i + bs]) for i in range(0, len(signals), bs)])
        return probs, None, None

    def explain_full(self, result: FileResult, samples: np.ndarray, chunk_idx: int) -> ChunkResult:
        """Run the full (input-masking) tier on one chunk of an analysed signal (16 kHz)."""
        c = result.chunks[chunk_idx]
        sig = samples[int(c.start_s * SAMPLE_RATE):int(c.end_s * SAMPLE_RATE)]
        from pipeline import explain

        c.explanation = explain.explain_chunk(self.emotion(), sig, config=self.config, tier="full",
                                              target_label=None, seed=c.idx)
        return c


#: Analyzers kept per configuration (cheap: they share the models of :mod:`pipeline.model_cache`).
ANALYZER_CACHE_SIZE = 16
_ANALYZERS: OrderedDict[str, Analyzer] = OrderedDict()
_ANALYZERS_LOCK = threading.Lock()


def get_analyzer(config: Config | None = None) -> Analyzer:
    """The process-wide Analyzer of a configuration (the last :data:`ANALYZER_CACHE_SIZE` used are kept).

    Analyzers of configurations that differ only in chunking, explanation or decoding settings share one
    loaded copy of each model (``pipeline.model_cache``, at most ``config.model_cache_size`` model sets).
    """
    config = config or load_config()
    key = config.to_json()
    with _ANALYZERS_LOCK:
        analyzer = _ANALYZERS.get(key)
        if analyzer is None:
            analyzer = _ANALYZERS[key] = Analyzer(config)
        _ANALYZERS.move_to_end(key)
        while len(_ANALYZERS) > ANALYZER_CACHE_SIZE:
            _ANALYZERS.popitem(last=False)
    return analyzer


def analyze_file(path: str | Path, config: Config | None = None) -> FileResult:
    """Analyse one audio file with the given (or the environment's) configuration."""
    return get_analyzer(config).analyze_file(path)


def analyze_signal(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, config: Config | None = None, *,
                   name: str = "<signal>", live: bool = False) -> FileResult:
    """Analyse a mono signal; ``live=True`` uses the live settings (beam 1, fast explanations)."""
    return get_analyzer(config).analyze_signal(samples, sample_rate, name=name, live=live)
