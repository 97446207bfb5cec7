"""The compact emotion model: works out of the box, no pretrained weights needed.

Structure (what makes the fast explanation tier exact)::

    16 kHz signal -> log-mel (25 ms window, 10 ms hop, 64 bands) -> per-utterance normalisation
      -> per ensemble member: a trunk giving one vector every 40 ms                      [frame_features]
           'tdnn'  : 1-D convolutions over time           -> [a * h_t, a]
           'cnn2d' : 2-D convolutions                     -> [a * h_t, a]
           'stats' : MFCC + deltas, pitch                 -> [a, a z, a z^2, w, w lf, w lf^2]
      -> mean over time -> each member's head -> softmax over the six emotions
      -> normalised geometric mean of the members' probabilities                         [head_proba]

``a`` is the fraction of active (non-silent) 10 ms frames in each 40 ms frame, so a head divides the
pooled ``a * h`` by the pooled ``a`` and sees the mean over speech only: the prediction does not depend
on how much silence surrounds the speech. ``head_proba(frame_features(x).mean(0, keepdims=True))`` *is*
the prediction: masking a time segment means dropping its frames from the mean. Members' frame vectors
are concatenated; ``head_proba`` splits the pooled vector back per member.

The shipped model lives in ``pipeline/models/compact/`` (``model.safetensors`` + ``config.json`` +
``MODEL_CARD.md``); it was trained on RAVDESS and inherits its licence, CC BY-NC-SA 4.0.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.types import BASE_EMOTIONS, EmotionModel, ModelUnavailableError

log = logging.getLogger(__name__)

#: Folder of the model shipped inside the package.
COMPACT_DIR = Path(__file__).resolve().parent / "models" / "compact"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Time-axis downsampling of the trunk (two 2x max-pools): frames every 4 log-mel hops.
TIME_STRIDE = 4
MEMBER_KINDS = ("tdnn", "cnn2d", "stats")


@dataclass
class CompactConfig:
    """Architecture and front-end settings (saved as ``config.json`` beside the weights).

    Attributes:
        sample_rate: input rate in Hz (signals are 16 kHz mono float32).
        n_fft / win_length / hop_length: STFT sizes in samples.
        n_mels, fmin, fmax: mel filterbank (Hz).
        top_db: log-mel floor below the utterance's maximum, in dB (makes it level-invariant).
        norm: per-utterance normalisation of the log-mel: 'bin' (mean/variance of each mel band over
            time), 'global' (one mean/variance per utterance) or 'none'.
        active_db: normalisation statistics use the frames whose loudest band is within this many dB
            of the utterance's loudest frame (speech, not the silence around it).
        members: the ensemble members' kinds, each with its own trunk and head: 'tdnn' (1-D
            convolutions over time, mel bands as channels), 'cnn2d' (2-D convolutions) or 'stats'
            (per-frame MFCC and deltas with their squares, so the pooled vector holds their means and
            second moments; the head turns them into means and standard deviations for a small MLP).
        channels: 2-D conv channels of the 'cnn2d' blocks.
        tdnn_channels: width of the 'tdnn' convolutions.
        embed_dim: per-frame vector size of each 'tdnn'/'cnn2d' member.
        n_mfcc: MFCCs of the 'stats' member (frame vector size 4 * n_mfcc, + 3 with ``stats_pitch``).
        stats_pitch: add pitch to the 'stats' member: per frame the voicing strength v (normalised
            autocorrelation peak, 50-600 Hz) and v * log2(f0), v * log2(f0)^2, so that the pooled vector
            gives the voicing rate and the voicing-weighted mean and spread of log pitch.
        stats_hidden: hidden units of the 'stats' member's MLP head.
        pool_std: 'tdnn'/'cnn2d' frames also carry a * h^2, so the head sees the standard deviation
            of h over the active frames besides its mean (x-vector style statistics pooling).
        combine: how members' probabilities make the ensemble's: 'geometric' (normalised product, i.e.
            softmax of the members' mean log-probabilities) or 'arithmetic' (mean).
        dropout: before each head (training only).
        labels: output classes, in order (the canonical six).
        train_labels: classes of each head; labels beyond ``labels`` are auxiliary training classes
            whose logits are dropped at inference (softmax over ``labels`` only).
        min_duration_s: shorter signals are zero-padded (centred) to this length.
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0
    top_db: float = 80.0
    norm: str = "bin"
    active_db: float = 40.0
    members: tuple[str, ...] = ("tdnn",)
    channels: tuple[int, ...] = (16, 32, 64, 64)
    tdnn_channels: int = 128
    embed_dim: int = 128
    n_mfcc: int = 20
    stats_pitch: bool = True
    stats_hidden: int = 64
    pool_std: bool = False
    combine: str = "geometric"
    dropout: float = 0.3
    labels: tuple[str, ...] = BASE_EMOTIONS
    train_labels: tuple[str, ...] = BASE_EMOTIONS
    min_duration_s: float = 0.25

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.members = tuple(self.members)
        bad = [m for m in self.members if m not in MEMBER_KINDS]
        if bad or not self.members:
            raise ValueError(f"compact config: members must be a non-empty list of {MEMBER_KINDS}, not {self.members}")
        self.labels = tuple(self.labels)
        self.train_labels = tuple(self.train_labels)
        if self.combine not in {"geometric", "arithmetic"}:
            raise ValueError(f"compact config: combine must be 'geometric' or 'arithmetic', not {self.combine!r}")
        if self.norm not in {"bin", "global", "none"}:
            raise ValueError(f"compact config: norm must be 'bin', 'global' or 'none', not {self.norm!r}")
        if tuple(self.train_labels[: len(self.labels)]) != self.labels:
            raise ValueError("compact config: train_labels must start with labels (auxiliary classes last)")

    @property
    def n_members(self) -> int:
        return len(self.members)

    def member_dim(self, kind: str) -> int:
        """Per-frame vector size of one member of this kind (the last/first entry is the activity)."""
        if kind == "stats":
            return 1 + 4 * self.n_mfcc + (3 if self.stats_pitch else 0)
        return self.embed_dim * (2 if self.pool_std else 1) + 1

    @property
    def frame_dim(self) -> int:
        """Size of the concatenated per-frame vector (``frame_features``' D)."""
        return sum(self.member_dim(k) for k in self.members)

    @property
    def frame_hop_s(self) -> float:
        """Seconds between consecutive trunk frames."""
        return self.hop_length * TIME_STRIDE / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CompactConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _torch():
    import torch  # lazy: importing pipeline.compact stays cheap

    return torch


@functools.cache
def _net_classes():
    """Build the torch module classes on first use (keeps torch a lazy import)."""
    torch = _torch()
    nn = torch.nn

    class LogMel(nn.Module):
        """Waveform (B, L) -> per-utterance normalised log-mel (B, n_mels, T)."""

        def __init__(self, cfg: CompactConfig):
            super().__init__()
            import librosa

            self.cfg = cfg
            fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                                     fmin=cfg.fmin, fmax=cfg.fmax)
            self.register_buffer("mel_fb", torch.tensor(fb, dtype=torch.float32), persistent=False)
            self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)
            pw = torch.hann_window(800)
            pw_ac = torch.fft.irfft(torch.fft.rfft(pw, n=1024).abs() ** 2, n=1024)
            self.register_buffer("pitch_window", pw, persistent=False)
            self.register_buffer("pitch_win_ac", (pw_ac / pw_ac[0]).clamp(min=1e-3), persistent=False)

        def power_db(self, wave):
            cfg = self.cfg
            spec = torch.stft(wave, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                              window=self.window, center=True, return_complex=True)
            mel = torch.matmul(self.mel_fb, spec.real ** 2 + spec.imag ** 2)
            db = 10.0 * torch.log10(mel + 1e-10)
            peak = db.amax(dim=(1, 2), keepdim=True)
            return torch.maximum(db, peak - cfg.top_db)

        def pitch(self, wave):
            """(B, L) -> (voicing strength v in [0, 1], log2(f0 / 100 Hz)), each (B, T) on the log-mel frames.

            Normalised autocorrelation of 50 ms Hann frames (via the power spectrum, divided by the window's
            own autocorrelation) over lags for 50-600 Hz: v is its peak, f0 the shortest lag that is a local
            maximum within 10% of the peak.
            """
            cfg = self.cfg
            spec = torch.stft(wave, n_fft=1024, hop_length=cfg.hop_length, win_length=800,
                              window=self.pitch_window, center=True, return_complex=True)
            ac = torch.fft.irfft(spec.real ** 2 + spec.imag ** 2, n=1024, dim=1)  # (B, 1024, T)
            lo, hi = cfg.sample_rate // 600, cfg.sample_rate // 50
            r = ac[:, lo:hi + 1] / (ac[:, :1] + 1e-9) / self.pitch_win_ac[lo:hi + 1, None]
            peak = r.max(dim=1).values
            # The shortest lag that is a local maximum within 10% of the best peak (avoids octave errors).
            local = torch.zeros_like(r, dtype=torch.bool)
            local[:, 1:-1] = (r[:, 1:-1] >= r[:, :-2]) & (r[:, 1:-1] >= r[:, 2:])
            ok = local & (r >= 0.9 * peak[:, None])
            lag = ok.to(torch.uint8).argmax(dim=1)  # 0 (the 600 Hz end) when no interior maximum
            v = torch.where(ok.any(dim=1), peak, torch.zeros_like(peak)).clamp(0.0, 1.0)
            f0 = cfg.sample_rate / (lag + lo).to(wave.dtype)
            return v, torch.log2(f0 / 100.0)

        def activity(self, db):
            """(B, M, T) dB -> (B, T) 1.0 for active frames (loudest band within ``active_db`` of the peak)."""
            frame_max = db.amax(dim=1)
            return (frame_max >= frame_max.amax(dim=1, keepdim=True) - self.cfg.active_db).to(db.dtype)

        def normalise(self, db):
            """Per-utterance mean/variance normalisation, statistics over the active frames only.

            A frame is active when its loudest band is within ``active_db`` of the utterance's loudest
            frame, so the normalised speech looks the same however much silence surrounds it.
            """
            cfg = self.cfg
            if cfg.norm == "none":
                return db / 20.0
            w = self.activity(db)[:, None, :]  # (B, 1, T)
            n = w.sum(dim=2, keepdim=True)
            if cfg.norm == "bin":
                mean = (db * w).sum(dim=2, keepdim=True) / n
                var = (((db - mean) ** 2) * w).sum(dim=2, keepdim=True) / n
            else:
                mean = (db * w).sum(dim=(1, 2), keepdim=True) / (n * db.shape[1])
                var = (((db - mean) ** 2) * w).sum(dim=(1, 2), keepdim=True) / (n * db.shape[1])
            return (db - mean) / (torch.sqrt(var) + 1e-3)

        def forward(self, wave):
            return self.normalise(self.power_db(wave))

    class Trunk(nn.Module):
        """'cnn2d': normalised log-mel (B, M, T) -> per-frame vectors (B, D, T // 4)."""

        def __init__(self, cfg: CompactConfig):
            super().__init__()
            layers: list[nn.Module] = []
            c_in, n_freq = 1, cfg.n_mels
            for i, c_out in enumerate(cfg.channels):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
                pool_t = 2 if i < 2 else 1  # TIME_STRIDE = 4
                layers.append(nn.MaxPool2d((2, pool_t)))
                c_in, n_freq = c_out, n_freq // 2
            self.conv = nn.Sequential(*layers)
            self.proj = nn.Sequential(
                nn.Conv1d(c_in * n_freq, cfg.embed_dim, 1, bias=False),
                nn.BatchNorm1d(cfg.embed_dim),
                nn.ReLU(),
            )

        def forward(self, x, db=None, wave=None, act=None):
            h = self.conv(x.unsqueeze(1))  # (B, C, F', T')
            b, c, f, t = h.shape
            return self.proj(h.reshape(b, c * f, t))

    class TdnnTrunk(nn.Module):
        """'tdnn': normalised log-mel (B, M, T) -> per-frame vectors (B, D, T // 4) with 1-D convolutions."""

        def __init__(self, cfg: CompactConfig):
            super().__init__()
            c = cfg.tdnn_channels

            def block(c_in, c_out, k, dil):
                return [nn.Conv1d(c_in, c_out, k, padding=dil * (k - 1) // 2, dilation=dil, bias=False),
                        nn.BatchNorm1d(c_out), nn.ReLU()]

            self.net = nn.Sequential(
                *block(cfg.n_mels, c, 5, 1), nn.MaxPool1d(2),
                *block(c, c, 3, 2), nn.MaxPool1d(2),
                *block(c, c, 3, 2),
                *block(c, cfg.embed_dim, 1, 1),
            )

        def forward(self, x, db=None, wave=None, act=None):
            return self.net(x)

    class StatsTrunk(nn.Module):
        """'stats': per frame [a, a z, a z^2, w, w log2 f0, w log2 f0^2], (B, 1 + 4n + 3, T // 4).

        z: centred MFCC + deltas; a: activity (0/1); w = a * voicing strength. Frames are averages of 4
        consecutive 10 ms frames, so that they align with the other members.
        """

        def __init__(self, cfg: CompactConfig):
            super().__init__()
            import scipy.fft

            self.cfg = cfg

            n = cfg.n_mfcc
            dct = scipy.fft.dct(np.eye(cfg.n_mels), axis=0, norm="ortho")[:n]
            self.register_buffer("dct", torch.tensor(dct, dtype=torch.float32), persistent=False)
            self.register_buffer("delta", torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0]) / 10.0, persistent=False)
            # Fixed centring/scaling of z (set from training data) keeps z^2 well conditioned.
            self.register_buffer("z_center", torch.zeros(2 * n))
            self.register_buffer("z_scale", torch.ones(2 * n))
            self.pitch_fn = None  # set by CompactNet: its front end's pitch()

        def z(self, db):
            mf = torch.matmul(self.dct, db - db.amax(dim=(1, 2), keepdim=True))  # (B, n, T), level-invariant
            padded = nn.functional.pad(mf, (2, 2), mode="replicate")
            b, n, t = mf.shape
            dl = nn.functional.conv1d(padded.reshape(b * n, 1, t + 4), self.delta.view(1, 1, 5)).reshape(b, n, t)
            return torch.cat([mf, dl], dim=1)

        def forward(self, x, db=None, wave=None, act=None):
            z = (self.z(db) - self.z_center[:, None]) / self.z_scale[:, None]
            a = act[:, None, :]
            parts = [a, a * z, a * z * z]
            if self.cfg.stats_pitch:
                v, lf = self.pitch_fn(wave)
                t = z.shape[2]
                v, lf = v[:, None, :t] * a, lf[:, None, :t]
                parts += [v, v * lf, v * lf * lf]
            f = torch.cat(parts, dim=1)
            b, d, t = f.shape
            t4 = t // TIME_STRIDE
            return f[:, :, : t4 * TIME_STRIDE].reshape(b, d, t4, TIME_STRIDE).mean(3)

    class StatsHead(nn.Module):
        """Pooled moments -> activity-weighted means and standard deviations (and pitch) -> standardised -> MLP."""

        def __init__(self, cfg: CompactConfig, n_out: int):
            super().__init__()
            d = 2 * cfg.n_mfcc
            self.d = d
            self.pitch = cfg.stats_pitch
            n_feat = 2 * d + (3 if self.pitch else 0)
            self.register_buffer("feat_mean", torch.zeros(n_feat))
            self.register_buffer("feat_std", torch.ones(n_feat))
            self.mlp = nn.Sequential(nn.Linear(n_feat, cfg.stats_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                     nn.Linear(cfg.stats_hidden, n_out))

        def features(self, pooled):
            d = self.d
            a = pooled[:, :1].clamp(min=1e-4)
            m, sq = pooled[:, 1:1 + d] / a, pooled[:, 1 + d:1 + 2 * d] / a
            std = torch.sqrt(torch.clamp(sq - m * m, min=0.0) + 1e-6)
            parts = [m, std]
            if self.pitch:
                v, vlf, vlf2 = pooled[:, 1 + 2 * d], pooled[:, 2 + 2 * d], pooled[:, 3 + 2 * d]
                mean_lf = vlf / (v + 1e-3)
                std_lf = torch.sqrt(torch.clamp(vlf2 / (v + 1e-3) - mean_lf * mean_lf, min=0.0) + 1e-6)
                parts.append(torch.stack([v, mean_lf, std_lf], dim=1))
            return (torch.cat(parts, dim=1) - self.feat_mean) / self.feat_std

        def forward(self, pooled):
            return self.mlp(self.features(pooled))

    class LinearHead(nn.Module):
        def __init__(self, cfg: CompactConfig, n_out: int):
            super().__init__()
            self.dropout = nn.Dropout(cfg.dropout)
            self.pool_std = cfg.pool_std
            self.d = cfg.embed_dim
            self.linear = nn.Linear(cfg.embed_dim * (2 if cfg.pool_std else 1), n_out)

        def forward(self, pooled):
            """Pooled [mean a h, (mean a h^2,) mean a] -> activity-weighted mean (and std) of h -> logits.

            With no active frame at all the mean is 0 (the head's bias decides).
            """
            a = pooled[:, -1:].clamp(min=1e-4)
            h = pooled[:, : self.d] / a
            if self.pool_std:
                sq = pooled[:, self.d: 2 * self.d] / a
                h = torch.cat([h, torch.sqrt(torch.clamp(sq - h * h, min=0.0) + 1e-6)], dim=1)
            return self.linear(self.dropout(h))

    trunk_cls = {"cnn2d": Trunk, "tdnn": TdnnTrunk, "stats": StatsTrunk}

    class CompactNet(nn.Module):
        """Front-end + member trunks + member heads."""

        def __init__(self, cfg: CompactConfig):
            super().__init__()
            self.cfg = cfg
            self.frontend = LogMel(cfg)
            n_out = len(cfg.train_labels)
            self.trunks = nn.ModuleList(trunk_cls[k](cfg) for k in cfg.members)
            self.heads = nn.ModuleList((StatsHead(cfg, n_out) if k == "stats" else LinearHead(cfg, n_out))
                                       for k in cfg.members)
            for trunk in self.trunks:
                if isinstance(trunk, StatsTrunk):
                    trunk.pitch_fn = self.frontend.pitch
            bounds = np.cumsum([0] + [cfg.member_dim(k) for k in cfg.members])
            self.slices = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]

        def features(self, wave):
            """(B, L) -> (normalised log-mel, log-mel dB), both (B, M, T)."""
            db = self.frontend.power_db(wave)
            return self.frontend.normalise(db), db

        def frames(self, feats, db, wave=None):
            """(B, M, T) normalised log-mel and dB (+ waveform for pitch) -> (B, frame_dim, T // 4).

            Neural members' frames are [a * h, a] with a the fraction of active 10 ms frames, so that
            the head can take the mean of h over speech only (pooled a h / pooled a).
            """
            act = self.frontend.activity(db)
            b, t = act.shape
            t4 = t // TIME_STRIDE
            a4 = act[:, : t4 * TIME_STRIDE].reshape(b, t4, TIME_STRIDE).mean(2)[:, None, :]
            out = []
            for trunk in self.trunks:
                if isinstance(trunk, StatsTrunk):
                    out.append(trunk(feats, db, wave, act))
                else:
                    h = trunk(feats, db, wave, act)
                    parts = [h * a4, h * h * a4] if self.cfg.pool_std else [h * a4]
                    out.append(torch.cat(parts + [a4], dim=1))
            return torch.cat(out, dim=1)

        def member_logits(self, pooled):
            """(B, frame_dim) pooled vectors -> (n_members, B, len(train_labels)) logits."""
            return torch.stack([head(pooled[:, a:b]) for head, (a, b) in zip(self.heads, self.slices)])

        def proba(self, pooled):
            """(B, frame_dim) -> (B, len(labels)): members' softmax over the output labels, combined."""
            logits = self.member_logits(pooled)[..., : len(self.cfg.labels)]
            return combine_member_proba(logits, self.cfg.combine)

        def wave_frames(self, wave):
            """(B, L) waveforms -> (B, frame_dim, T // 4)."""
            return self.frames(*self.features(wave), wave)

        def forward(self, wave):
            """(B, L) waveforms -> (B, len(labels)) probabilities (eval path)."""
            return self.proba(self.wave_frames(wave).mean(2))

    return LogMel, Trunk, CompactNet


def combine_member_proba(logits, rule: str):
    """(n_members, B, C) logits -> (B, C) probabilities: 'geometric' or 'arithmetic' mean of the members'."""
    torch = _torch()
    logp = torch.log_softmax(logits, dim=-1)
    if rule == "geometric":
        return torch.softmax(logp.mean(0), dim=-1)
    return logp.exp().mean(0)


def build_net(cfg: CompactConfig):
    """A fresh, randomly initialised ``CompactNet`` for ``cfg``."""
    return _net_classes()[2](cfg)


def pad_signal(signal: np.ndarray, cfg: CompactConfig) -> np.ndarray:
    """The signal as float32, zero-padded (centred) to ``cfg.min_duration_s``.

    Raises:
        ValueError: an empty signal.
    """
    x = np.asarray(signal, dtype=np.float32).reshape(-1)
    if x.size == 0:
        raise ValueError("compact model: empty signal (no samples)")
    n_min = int(round(cfg.min_duration_s * cfg.sample_rate))
    if x.size < n_min:
        left = (n_min - x.size) // 2
        x = np.pad(x, (left, n_min - x.size - left))
    return x


class CompactEmotionModel(EmotionModel):
    """The compact model as an ``EmotionModel`` (CPU, a few milliseconds per 3 s clip)."""

    has_attention = False

    def __init__(self, net, cfg: CompactConfig, *, name: str = "compact", trained: bool = True,
                 metadata: dict[str, Any] | None = None):
        self.net = net.eval()
        self.cfg = cfg
        self.name = name
        self.labels = tuple(cfg.labels)
        self.trained = trained
        self.frame_hop_s = cfg.frame_hop_s
        self.sample_rate = cfg.sample_rate
        self.metadata = metadata or {}

    def frame_features(self, signal: np.ndarray) -> np.ndarray:
        """Per-frame vectors (T, frame_dim), one every ``frame_hop_s`` (40 ms); T = samples // 640."""
        torch = _torch()
        x = torch.from_numpy(pad_signal(signal, self.cfg))[None]
        with torch.inference_mode():
            frames = self.net.wave_frames(x)[0]
        return frames.T.contiguous().numpy()

    def head_proba(self, pooled: np.ndarray) -> np.ndarray:
        """(k, D) pooled frame vectors -> (k, 6) probabilities (rows sum to 1)."""
        torch = _torch()
        p = torch.from_numpy(np.ascontiguousarray(pooled, dtype=np.float32)).reshape(-1, self.cfg.frame_dim)
        with torch.inference_mode():
            return self.net.proba(p).numpy().astype(np.float64)

    def predict_proba(self, signals: list[np.ndarray]) -> np.ndarray:
        """(len(signals), 6) probabilities; each signal is normalised on its own (any length)."""
        if len(signals) == 0:
            return np.zeros((0, len(self.labels)))
        return super().predict_proba(list(signals))

    def save(self, out_dir: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` to ``out_dir``; returns the weights path."""
        return save_compact(self.net, self.cfg, out_dir, metadata={**self.metadata, **(extra or {})},
                            trained=self.trained)


def save_compact(net, cfg: CompactConfig, out_dir: str | Path, *, metadata: dict[str, Any] | None = None,
                 trained: bool = True) -> Path:
    """Save a ``CompactNet``'s weights (safetensors) and its config/label map/metadata (JSON).

    Returns:
        The path of the weights file.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "arch": "compact"})
    doc = {
        "arch": "compact",
        "trained": trained,
        "config": cfg.to_dict(),
        "labels": list(cfg.labels),
        "label2id": {lab: i for i, lab in enumerate(cfg.labels)},
        "frame_hop_s": cfg.frame_hop_s,
        **(metadata or {}),
    }
    (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2, sort_keys=False, default=json_default) + "\n")
    return out / WEIGHTS_FILE


def json_default(obj: Any) -> Any:
    """``json.dumps`` default for model folders' config.json: numpy scalars/arrays, sets and tuples as JSON."""
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def is_compact_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a compact model (config.json with arch 'compact')."""
    p = Path(path) / CONFIG_FILE
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("arch") == "compact"
    except (OSError, ValueError):
        return False


def card_summary(path: str | Path | None = None) -> str | None:
    """One plain sentence on what the shipped compact model is and how well it does on unseen speakers
    (from its ``config.json``'s ``cross_validation``), for pages and reports; None when not recorded."""
    try:
        doc = json.loads((Path(path or COMPACT_DIR) / "config.json").read_text())
        cv = doc["cross_validation"]
        uar = float(cv["uar_mean"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    n = len(doc.get("labels") or BASE_EMOTIONS)
    return (f"The compact model (shipped, no download) tells {n} emotions apart; trained on acted English "
            f"studio speech (RAVDESS), it gets {uar:.0%} balanced accuracy on actors it never heard "
            f"(chance {1 / n:.0%}). Expect less on spontaneous, telephone or non-English speech; voice is "
            "not felt emotion. See pipeline/models/compact/MODEL_CARD.md.")


def load_compact(path: str | Path | None = None) -> CompactEmotionModel:
    """Load a compact model folder (default: the one shipped in ``pipeline/models/compact/``).

    Results are cached per resolved path (the model is read-only at inference).

    Raises:
        ModelUnavailableError: the folder, its weights or its config is missing or unreadable.
    """
    folder = Path(path).expanduser().resolve() if path is not None else COMPACT_DIR
    return _load_compact_cached(str(folder))


@functools.lru_cache(maxsize=4)
def _load_compact_cached(folder: str) -> CompactEmotionModel:
    from safetensors.torch import load_file

    root = Path(folder)
    name = "compact" if root == COMPACT_DIR else folder
    cfg_path, w_path = root / CONFIG_FILE, root / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelUnavailableError(name, f"{root} lacks {CONFIG_FILE} or {WEIGHTS_FILE} "
                                          "(train one with `emotivoice train --arch compact`)")
    try:
        doc = json.loads(cfg_path.read_text())
        cfg = CompactConfig.from_dict(doc["config"])
        net = build_net(cfg)
        net.load_state_dict(load_file(str(w_path)))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelUnavailableError(name, f"cannot read the compact model in {root}: {exc}") from exc
    meta = {k: v for k, v in doc.items() if k not in {"config", "labels", "label2id", "frame_hop_s"}}
    log.info("loaded compact emotion model from %s (%d member(s))", root, cfg.n_members)
    return CompactEmotionModel(net, cfg, name=name, trained=bool(doc.get("trained", True)), metadata=meta)
