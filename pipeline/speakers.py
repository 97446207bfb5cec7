"""Who spoke: a speaker label per chunk within one file (S1, S2, ... in order of first appearance).

Each chunk's voice becomes a 256-d embedding from resemblyzer's GE2E encoder (a 3-layer LSTM over 40 mel
bands; its weights ship inside the resemblyzer wheel, Apache-2.0), after resemblyzer's own preprocessing
(volume raised to -30 dBFS, pauses shortened by WebRTC VAD). The embeddings are clustered
agglomeratively on cosine distance with average linkage:

* ``config.speakers = 'auto'``: clusters closer than ``config.speaker_threshold`` merge, at most
  ``config.max_speakers`` speakers;
* ``config.speakers = N``: exactly N clusters (fewer when the file has fewer chunks);
* ``config.speakers = 'none'``: no labels, nothing loaded.

Short chunks carry little voice, so they do not shape the clusters:

* a chunk shorter than :data:`MIN_CLUSTER_S` gets the label of the nearest cluster (highest cosine
  similarity of its embedding to the cluster's mean embedding), when one was formed from longer chunks;
* a chunk shorter than :data:`MIN_EMBED_S` of voice (after resemblyzer trims its pauses) gets None:
  too little to tell.

A file with a single labelled chunk is S1 without running the encoder. Labels name voices *within* one
file: S1 of one file and S1 of another are unrelated.

resemblyzer imports ``webrtcvad``, whose module imports ``pkg_resources`` (removed in setuptools 81), so
the project pins ``setuptools<81``; the import's deprecation warning is silenced here.

Public API: :func:`assign_speakers`, :class:`Speakers`, :func:`cluster_embeddings`,
:func:`labels_in_order`, :func:`parse_speakers`, :class:`SpeakerEncoderUnavailable`.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import Config
from pipeline.runtime import SAMPLE_RATE, resolve_device
from pipeline.types import Chunk

logger = logging.getLogger(__name__)

#: Chunks with less voice than this (s, after resemblyzer's pause trimming) get no label.
MIN_EMBED_S = 0.5
#: Chunks shorter than this (s) are labelled by the nearest cluster instead of forming clusters.
MIN_CLUSTER_S = 1.0
#: Torch CPU threads while embedding (set on the calling thread only, restored after). The encoder is a
#: small LSTM on a batch of a few 1.6 s windows: on 2 busy cores 2 threads were 12x slower than 1
#: (OpenMP spin-waits; 2.0 s vs 0.16 s for a 3.3 s clip), and 1 thread leaves a core to the rest.
ENCODER_THREADS = 1


class SpeakerEncoderUnavailable(RuntimeError):
    """resemblyzer cannot run here; the reason says why (the analysis goes on without speaker labels)."""


@dataclass
class Speakers:
    """Speaker labels of one file's chunks."""

    labels: list[str | None]
    """One per chunk, in chunk order: 'S1', 'S2', ... or None (too short, or labelling off/unavailable)."""
    mode: str
    """'auto', 'fixed' or 'none'."""
    n_speakers: int = 0
    note: str | None = None
    """A message for the user (why there are no labels), else None."""
    embeddings: np.ndarray | None = field(default=None, repr=False)
    """(n_chunks, 256) unit embeddings, NaN rows for chunks without one; None when none were computed."""


def parse_speakers(value: str | int) -> int | str:
    """``config.speakers`` as 'auto', 'none' or a positive int.

    Raises:
        ValueError: anything else, naming the option and the accepted values.
    """
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"config option 'speakers': {value!r} is not 'auto', 'none' or a number of speakers >= 1")
    return n


def assign_speakers(samples: np.ndarray, chunks: list[Chunk], config: Config | None = None, *,
                    sample_rate: int = SAMPLE_RATE) -> Speakers:
    """Label each chunk of one file with its speaker.

    Args:
        samples: the file's mono signal (16 kHz float32 in the pipeline).
        chunks: its chunks (seconds from the signal start).
        config: uses ``speakers``, ``max_speakers``, ``speaker_threshold`` and ``device``.
        sample_rate: rate of ``samples`` in Hz.

    Returns:
        :class:`Speakers`; when resemblyzer cannot run, every label None and a note saying why.

    Raises:
        ValueError: an invalid ``config.speakers``.
    """
    config = config or Config()
    want = parse_speakers(config.speakers)
    n = len(chunks)
    if want == "none" or n == 0:
        return Speakers([None] * n, "none" if want == "none" else str(_mode(want)))
    mode = _mode(want)
    long_enough = [c.duration_s >= MIN_EMBED_S for c in chunks]
    if n == 1:  # one voice by definition: no encoder needed
        label = "S1" if long_enough[0] else None
        return Speakers([label], mode, int(label is not None))
    try:
        encoder = load_encoder(resolve_device(config.device, strict=False))
    except SpeakerEncoderUnavailable as exc:
        note = f"speaker labels unavailable: {exc}"
        logger.warning(note)
        return Speakers([None] * n, mode, 0, note)
    signals = [_resample(samples[int(c.start_s * sample_rate):int(c.end_s * sample_rate)], sample_rate)
               for c in chunks]
    emb = embed_signals(encoder, signals)
    durations = np.array([c.duration_s for c in chunks])
    ids = cluster_embeddings(emb, durations, n_speakers=None if want == "auto" else int(want),
                             threshold=config.speaker_threshold, max_speakers=config.max_speakers)
    labels = labels_in_order(ids)
    return Speakers(labels, mode, len({x for x in labels if x is not None}), embeddings=emb)


def _mode(want: int | str) -> str:
    return want if isinstance(want, str) else "fixed"


def _resample(x: np.ndarray, rate: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    if rate == SAMPLE_RATE:
        return x
    import librosa

    return librosa.resample(x, orig_sr=rate, target_sr=SAMPLE_RATE).astype(np.float32)


@functools.lru_cache(maxsize=2)
def load_encoder(device: str = "cpu"):
    """resemblyzer's VoiceEncoder on ``device``, loaded once per process.

    Raises:
        SpeakerEncoderUnavailable: resemblyzer (or its webrtcvad/pkg_resources imports) missing, or its
            weights unreadable.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pkg_resources deprecation (webrtcvad) and scipy.ndimage.morphology
            from resemblyzer import VoiceEncoder
    except ImportError as exc:
        raise SpeakerEncoderUnavailable(
            f"resemblyzer could not be imported ({exc}); pip install 'resemblyzer>=0.1.4,<0.2' 'setuptools<81'"
        ) from exc
    try:
        return VoiceEncoder(device=device, verbose=False)
    except Exception as exc:  # noqa: BLE001 - weights missing or unreadable
        raise SpeakerEncoderUnavailable(f"resemblyzer's voice encoder could not be loaded: {exc}") from exc


def embed_signals(encoder, signals: list[np.ndarray]) -> np.ndarray:
    """(len(signals), 256) unit embeddings of 16 kHz signals; a NaN row where less than
    :data:`MIN_EMBED_S` of voice is left after resemblyzer's preprocessing (or the signal is silent)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import preprocess_wav

    import torch

    out = np.full((len(signals), 256), np.nan, dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(ENCODER_THREADS)  # this thread only (OpenMP); see ENCODER_THREADS
    try:
        for i, x in enumerate(signals):
            if len(x) < MIN_EMBED_S * SAMPLE_RATE or not np.any(x):
                continue
            wav = preprocess_wav(np.clip(x, -1.0, 1.0))
            if len(wav) < MIN_EMBED_S * SAMPLE_RATE:
                continue
            e = np.asarray(encoder.embed_utterance(wav), dtype=np.float32)
            if np.all(np.isfinite(e)):
                out[i] = e
    finally:
        torch.set_num_threads(threads)
    return out


def cluster_embeddings(emb: np.ndarray, durations: np.ndarray | None = None, *, n_speakers: int | None = None,
                       threshold: float = 0.35, max_speakers: int = 8) -> list[int | None]:
    """A cluster id per embedding row (None for NaN rows), by agglomerative clustering on cosine distance.

    Args:
        emb: (n, d) embeddings, NaN rows for chunks without one.
        durations: seconds per row; rows under :data:`MIN_CLUSTER_S` join the nearest cluster formed by
            the others (all rows form clusters when None, or when fewer than two rows are long enough).
        n_speakers: exactly this many clusters (at most the number of rows); None estimates it.
        threshold: 'auto': the cosine distance (average linkage) under which clusters merge.
        max_speakers: 'auto': at most this many clusters.
    """
    from sklearn.cluster import AgglomerativeClustering

    n = len(emb)
    ok = np.flatnonzero(np.all(np.isfinite(emb), axis=1)) if n else np.zeros(0, dtype=int)
    ids: list[int | None] = [None] * n
    if not len(ok):
        return ids
    core = ok
    if durations is not None:
        long_rows = ok[np.asarray(durations)[ok] >= MIN_CLUSTER_S]
        if len(long_rows) >= 2:
            core = long_rows
    if len(core) == 1:
        core_ids = np.zeros(1, dtype=int)
    else:
        x = emb[core].astype(np.float64)
        if n_speakers is not None:
            k = max(1, min(int(n_speakers), len(core)))
            core_ids = (np.zeros(len(core), dtype=int) if k == 1 else AgglomerativeClustering(
                n_clusters=k, metric="cosine", linkage="average").fit_predict(x))
        else:
            core_ids = AgglomerativeClustering(n_clusters=None, distance_threshold=float(threshold),
                                               metric="cosine", linkage="average").fit_predict(x)
            if len(set(core_ids.tolist())) > max(1, max_speakers):
                core_ids = AgglomerativeClustering(n_clusters=max(1, max_speakers), metric="cosine",
                                                   linkage="average").fit_predict(x)
    for row, cid in zip(core.tolist(), core_ids.tolist()):
        ids[row] = int(cid)
    rest = [r for r in ok.tolist() if ids[r] is None]
    if rest:  # short chunks: the nearest cluster mean
        centroids = np.stack([emb[core[core_ids == k]].mean(0) for k in range(int(core_ids.max()) + 1)])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        for r in rest:
            ids[r] = int(np.argmax(centroids @ emb[r]))
    return ids


def labels_in_order(ids: list[int | None]) -> list[str | None]:
    """Cluster ids -> 'S1', 'S2', ... numbered by first appearance (None stays None)."""
    names: dict[int, str] = {}
    out: list[str | None] = []
    for cid in ids:
        if cid is None:
            out.append(None)
            continue
        if cid not in names:
            names[cid] = f"S{len(names) + 1}"
        out.append(names[cid])
    return out
