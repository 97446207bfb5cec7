"""Acoustic features of a chunk of speech: pitch, energy, rate, spectrum, MFCCs, voice quality, formants.

Every feature name carries its unit. Values are NaN (never an exception) when a feature cannot be
measured — silence, a chunk too short for the analysis window, no voiced frames — and the reason is
logged and returned by :func:`extract_features_detailed`.

Methods (16 kHz mono float input, 10 ms frame step throughout):

========================== ===================================================================
name                       method
========================== ===================================================================
pitch_mean_hz              Praat autocorrelation pitch (``To Pitch (ac)``, floor 75 Hz, ceiling
                           500 Hz) via parselmouth; mean F0 over voiced frames, Hz.
pitch_var_hz2              population variance of F0 over voiced frames, Hz².
rms_energy                 root mean square of the samples (full scale = 1.0), linear amplitude.
speaking_rate_syl_per_s    syllable nuclei per second (de Jong & Wempe 2009): peaks of Praat's
                           intensity contour that rise at least 2 dB above the preceding dip, lie
                           above (99th-percentile intensity − 25 dB) and are voiced; divided by the
                           chunk duration.
spectral_centroid_hz       magnitude-weighted mean frequency of the 25 ms STFT frames, averaged over
                           non-silent frames, Hz.
zcr                        fraction of consecutive samples whose sign differs (per sample).
mfcc_1 … mfcc_13           means over non-silent frames of 13 MFCCs (40 mel bands, 25 ms window,
                           log power in dB, DCT-II ortho; librosa).
jitter_local               Praat ``Get jitter (local)`` of the cross-correlation point process
                           (period 0.1–20 ms, max period factor 1.3): mean absolute difference of
                           consecutive glottal periods over the mean period (ratio, 0.01 = 1 %).
shimmer_local              Praat ``Get shimmer (local)`` (same point process, max amplitude factor
                           1.6): mean absolute difference of consecutive peak amplitudes over the
                           mean amplitude (ratio).
f1_f2_ratio                median over voiced frames of F1/F2 from Praat Burg formants (5 formants
                           up to 5500 Hz, 25 ms window), dimensionless.
========================== ===================================================================

Cost: about 10–30 ms per second of audio on one core (Praat pitch and formants dominate).

The same measurements summarised over sub-ranges of a chunk (used by the explanations' surrogate,
see :mod:`pipeline.explain`) come from :func:`feature_tracks` + :meth:`FeatureTracks.summarize`,
which analyses the chunk once and then aggregates any time range almost for free.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.runtime import SAMPLE_RATE

logger = logging.getLogger(__name__)

HOP_S = 0.01
N_FFT = 400  # 25 ms at 16 kHz
N_MFCC = 13
PITCH_FLOOR_HZ = 75.0
PITCH_CEILING_HZ = 500.0
SILENT_FRAME_RMS = 1e-4
"""A frame quieter than this (-80 dBFS) counts as silent."""
MIN_PRAAT_S = 0.1
"""Shorter chunks get NaN for the Praat measures (pitch, rate, jitter, shimmer, formants)."""
MIN_SPECTRAL_S = 0.025
"""Shorter chunks get NaN for the spectral measures (centroid, MFCCs)."""

MFCC_NAMES: tuple[str, ...] = tuple(f"mfcc_{i}" for i in range(1, N_MFCC + 1))

FEATURE_NAMES: tuple[str, ...] = (
    "pitch_mean_hz", "pitch_var_hz2", "rms_energy", "speaking_rate_syl_per_s", "spectral_centroid_hz",
    "zcr", *MFCC_NAMES, "jitter_local", "shimmer_local", "f1_f2_ratio",
)
"""Every feature :func:`extract_features` returns, in a fixed order."""

FEATURE_UNITS: dict[str, str] = {
    "pitch_mean_hz": "Hz",
    "pitch_var_hz2": "Hz²",
    "rms_energy": "linear RMS (full scale 1.0)",
    "speaking_rate_syl_per_s": "syllables/s",
    "spectral_centroid_hz": "Hz",
    "zcr": "crossings per sample",
    **{m: "dB-scaled cepstral coefficient" for m in MFCC_NAMES},
    "jitter_local": "ratio",
    "shimmer_local": "ratio",
    "f1_f2_ratio": "ratio",
}

INTERPRETABLE_FEATURES: tuple[str, ...] = (
    "pitch_mean_hz", "pitch_var_hz2", "rms_energy", "speaking_rate_syl_per_s", "spectral_centroid_hz",
    "zcr", "jitter_local", "shimmer_local", "f1_f2_ratio",
)
"""The named prosodic/voice features (no MFCCs) that the feature-level explanations use."""


@dataclass
class FeatureSet:
    """Feature values (NaN where not measurable) and, for each NaN, the reason."""

    values: dict[str, float]
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass
class FeatureTracks:
    """Frame-level measurements of one chunk, from which any time range can be summarised.

    Attributes:
        samples: the chunk, float32 16 kHz.
        sample_rate: Hz.
        duration_s: seconds.
        frame_times_s: centre of each STFT frame (s).
        frame_rms: RMS per STFT frame.
        centroid_hz: spectral centroid per STFT frame (NaN for silent frames).
        mfcc: (13, frames) MFCCs.
        pitch_times_s / pitch_hz: Praat F0 track (0 = unvoiced); None when not measurable.
        intensity_times_s / intensity_db: Praat intensity contour; None when not measurable.
        formant_times_s / f1_hz / f2_hz: Burg formant tracks; None when not measurable.
        nuclei_times_s: times of detected syllable nuclei.
        notes: reasons for measures that could not be taken at all, by feature name.
    """

    samples: np.ndarray
    sample_rate: int
    duration_s: float
    frame_times_s: np.ndarray
    frame_rms: np.ndarray
    centroid_hz: np.ndarray
    mfcc: np.ndarray
    pitch_times_s: np.ndarray | None = None
    pitch_hz: np.ndarray | None = None
    intensity_times_s: np.ndarray | None = None
    intensity_db: np.ndarray | None = None
    formant_times_s: np.ndarray | None = None
    f1_hz: np.ndarray | None = None
    f2_hz: np.ndarray | None = None
    nuclei_times_s: np.ndarray | None = None
    notes: dict[str, str] = field(default_factory=dict)
    _sound: Any = None
    _points: Any = None

    def summarize(self, start_s: float = 0.0, end_s: float | None = None) -> FeatureSet:
        """All features of the range [start_s, end_s) of the chunk (seconds from the chunk start)."""
        end_s = self.duration_s if end_s is None else min(end_s, self.duration_s)
        start_s = max(0.0, start_s)
        values = {name: math.nan for name in FEATURE_NAMES}
        reasons: dict[str, str] = {}
        dur = end_s - start_s

        def nan(names: tuple[str, ...] | list[str], reason: str) -> None:
            for n in names:
                values[n] = math.nan
                reasons.setdefault(n, reason)

        i0, i1 = int(round(start_s * self.sample_rate)), int(round(end_s * self.sample_rate))
        x = self.samples[i0:i1]
        if x.size == 0:
            nan(FEATURE_NAMES, "empty range: no samples")
            return FeatureSet(values, reasons)
        values["rms_energy"] = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        values["zcr"] = float(np.mean(np.signbit(x[1:]) != np.signbit(x[:-1]))) if x.size > 1 else math.nan
        if x.size <= 1:
            reasons["zcr"] = "a single sample has no crossings to count"

        in_range = (self.frame_times_s >= start_s) & (self.frame_times_s < end_s)
        loud = in_range & (self.frame_rms >= SILENT_FRAME_RMS)
        silent = not np.any(loud)
        sound_names = [n for n in FEATURE_NAMES if n not in ("rms_energy", "zcr")]
        if silent:
            nan(sound_names, "silence: no frame above -80 dBFS")
            return FeatureSet(values, reasons)

        # spectral
        if dur < MIN_SPECTRAL_S:
            nan(("spectral_centroid_hz", *MFCC_NAMES), f"too short ({dur:.3f} s < {MIN_SPECTRAL_S} s)")
        else:
            cent = self.centroid_hz[loud]
            values["spectral_centroid_hz"] = float(np.nanmean(cent)) if np.any(np.isfinite(cent)) else math.nan
            if not np.isfinite(values["spectral_centroid_hz"]):
                reasons["spectral_centroid_hz"] = "no frame with spectral energy"
            means = self.mfcc[:, loud].mean(axis=1)
            for name, v in zip(MFCC_NAMES, means):
                values[name] = float(v)

        praat_names = ("pitch_mean_hz", "pitch_var_hz2", "speaking_rate_syl_per_s", "jitter_local",
                       "shimmer_local", "f1_f2_ratio")
        if dur < MIN_PRAAT_S:
            nan(praat_names, f"too short ({dur:.3f} s < {MIN_PRAAT_S} s) for Praat's analysis windows")
            return FeatureSet(values, reasons)
        for name, why in self.notes.items():
            nan((name,), why)

        # pitch
        voiced_f0 = np.zeros(0)
        if self.pitch_hz is not None:
            sel = (self.pitch_times_s >= start_s) & (self.pitch_times_s < end_s)
            f0 = self.pitch_hz[sel]
            voiced_f0 = f0[f0 > 0]
            if voiced_f0.size >= 2:
                values["pitch_mean_hz"] = float(voiced_f0.mean())
                values["pitch_var_hz2"] = float(voiced_f0.var())
            else:
                nan(("pitch_mean_hz", "pitch_var_hz2"), "fewer than 2 voiced frames (unvoiced or noise)")

        # speaking rate
        if self.nuclei_times_s is not None:
            n = int(np.sum((self.nuclei_times_s >= start_s) & (self.nuclei_times_s < end_s)))
            values["speaking_rate_syl_per_s"] = n / dur

        # jitter / shimmer on the range (Praat takes the time range itself)
        if self._points is not None:
            from parselmouth.praat import call

            n_pulses = call(self._points, "Get number of points")
            if n_pulses < 3 or voiced_f0.size < 2:
                nan(("jitter_local", "shimmer_local"), "too few glottal pulses (unvoiced)")
            else:
                for name, fn in (
                    ("jitter_local", lambda: call(self._points, "Get jitter (local)", start_s, end_s,
                                                  0.0001, 0.02, 1.3)),
                    ("shimmer_local", lambda: call([self._sound, self._points], "Get shimmer (local)",
                                                   start_s, end_s, 0.0001, 0.02, 1.3, 1.6)),
                ):
                    try:
                        v = float(fn())
                    except Exception as exc:  # Praat raises on degenerate ranges
                        nan((name,), f"Praat could not measure it: {exc}")
                        continue
                    if math.isfinite(v):
                        values[name] = v
                    else:
                        nan((name,), "too few consecutive glottal periods in range")

        # formants
        if self.f1_hz is not None and self.pitch_hz is not None:
            sel = (self.formant_times_s >= start_s) & (self.formant_times_s < end_s)
            voiced = _voiced_at(self.formant_times_s[sel], self.pitch_times_s, self.pitch_hz)
            f1, f2 = self.f1_hz[sel][voiced], self.f2_hz[sel][voiced]
            ok = np.isfinite(f1) & np.isfinite(f2) & (f2 > 0)
            if np.any(ok):
                values["f1_f2_ratio"] = float(np.median(f1[ok] / f2[ok]))
            else:
                nan(("f1_f2_ratio",), "no voiced frame with measurable F1 and F2")
        return FeatureSet(values, reasons)


def _voiced_at(times: np.ndarray, pitch_times: np.ndarray, pitch_hz: np.ndarray) -> np.ndarray:
    """Whether the pitch track is voiced at each of ``times`` (nearest pitch frame)."""
    if pitch_times.size == 0:
        return np.zeros(times.shape, dtype=bool)
    idx = np.clip(np.searchsorted(pitch_times, times), 0, pitch_times.size - 1)
    prev = np.clip(idx - 1, 0, pitch_times.size - 1)
    nearest = np.where(np.abs(pitch_times[prev] - times) < np.abs(pitch_times[idx] - times), prev, idx)
    return pitch_hz[nearest] > 0


def _syllable_nuclei(times: np.ndarray, db: np.ndarray, pitch_times: np.ndarray, pitch_hz: np.ndarray,
                     *, silence_db: float = -25.0, min_dip_db: float = 2.0) -> np.ndarray:
    """Times of syllable nuclei: voiced intensity peaks above threshold with a >= 2 dB dip before."""
    if db.size < 3:
        return np.zeros(0)
    threshold = np.percentile(db, 99) + silence_db
    threshold = max(threshold, np.min(db))
    is_peak = (db[1:-1] > db[:-2]) & (db[1:-1] >= db[2:])
    peaks = np.flatnonzero(is_peak) + 1
    peaks = peaks[db[peaks] > threshold]
    kept: list[int] = []
    for p in peaks:
        if not kept:
            # the first peak needs a dip from the start of the contour
            if db[p] - np.min(db[: p + 1]) >= min_dip_db:
                kept.append(p)
            continue
        prev = kept[-1]
        dip = np.min(db[prev:p + 1])
        if db[p] - dip >= min_dip_db and db[prev] - dip >= min_dip_db:
            kept.append(p)
        elif db[p] > db[prev]:
            kept[-1] = p  # same syllable, higher peak
    kept_arr = np.asarray(kept, dtype=int)
    if kept_arr.size == 0:
        return np.zeros(0)
    nuclei = times[kept_arr]
    return nuclei[_voiced_at(nuclei, pitch_times, pitch_hz)]


def feature_tracks(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> FeatureTracks:
    """Analyse a chunk once (STFT, MFCC, Praat pitch/intensity/formants/pulses); never raises.

    Args:
        samples: mono float samples in [-1, 1].
        sample_rate: Hz (other rates are resampled to 16 kHz).
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if sample_rate != SAMPLE_RATE and x.size:
        import librosa

        x = librosa.resample(x, orig_sr=sample_rate, target_sr=SAMPLE_RATE).astype(np.float32)
    sr = SAMPLE_RATE
    dur = x.size / sr
    hop = int(HOP_S * sr)
    tracks = FeatureTracks(
        samples=x, sample_rate=sr, duration_s=dur, frame_times_s=np.zeros(0), frame_rms=np.zeros(0),
        centroid_hz=np.zeros(0), mfcc=np.zeros((N_MFCC, 0)),
    )
    if x.size == 0:
        return tracks

    # --- one STFT for frame RMS, centroid and MFCCs (frames centred at k * hop)
    try:
        import librosa

        pad = N_FFT // 2
        xp = np.pad(x, (pad, pad))
        n_frames = 1 + max(0, (xp.size - N_FFT)) // hop
        frames = np.lib.stride_tricks.sliding_window_view(xp, N_FFT)[::hop][:n_frames]
        window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
        spec = np.abs(np.fft.rfft(frames * window, axis=1)).T  # (bins, frames)
        freqs = np.fft.rfftfreq(N_FFT, 1.0 / sr)
        tracks.frame_times_s = np.arange(spec.shape[1]) * HOP_S
        tracks.frame_rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
        mag_sum = spec.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            cent = (freqs[:, None] * spec).sum(axis=0) / mag_sum
        tracks.centroid_hz = np.where(mag_sum > 0, cent, np.nan)
        mel = librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=40)
        logmel = librosa.power_to_db(mel @ spec**2, ref=1.0, amin=1e-10, top_db=None)
        tracks.mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=N_MFCC)
    except Exception as exc:  # defensive: the feature step must never stop an analysis
        logger.warning("spectral features failed: %s", exc)

    # --- Praat measures
    if dur < MIN_PRAAT_S or not np.any(tracks.frame_rms >= SILENT_FRAME_RMS):
        return tracks
    try:
        import parselmouth
        from parselmouth.praat import call

        snd = parselmouth.Sound(x.astype(np.float64), sampling_frequency=sr)
        tracks._sound = snd
        pitch = snd.to_pitch_ac(time_step=HOP_S, pitch_floor=PITCH_FLOOR_HZ, pitch_ceiling=PITCH_CEILING_HZ)
        tracks.pitch_times_s = np.asarray(pitch.xs())
        tracks.pitch_hz = np.nan_to_num(pitch.selected_array["frequency"])
        try:
            intensity = snd.to_intensity(minimum_pitch=PITCH_FLOOR_HZ, time_step=HOP_S)
            tracks.intensity_times_s = np.asarray(intensity.xs())
            tracks.intensity_db = np.asarray(intensity.values[0])
            tracks.nuclei_times_s = _syllable_nuclei(tracks.intensity_times_s, tracks.intensity_db,
                                                     tracks.pitch_times_s, tracks.pitch_hz)
        except Exception as exc:
            tracks.notes["speaking_rate_syl_per_s"] = f"Praat intensity failed: {exc}"
        try:
            tracks._points = call([snd, pitch], "To PointProcess (cc)")
        except Exception as exc:
            tracks.notes["jitter_local"] = tracks.notes["shimmer_local"] = f"Praat pulses failed: {exc}"
        try:
            formant = snd.to_formant_burg(time_step=2 * HOP_S, max_number_of_formants=5,
                                          maximum_formant=5500.0, window_length=0.025)
            tracks.formant_times_s = np.asarray(formant.xs())
            tracks.f1_hz = np.asarray(call(formant, "To Matrix", 1).values[0])
            tracks.f2_hz = np.asarray(call(formant, "To Matrix", 2).values[0])
            tracks.f1_hz = np.where(tracks.f1_hz > 0, tracks.f1_hz, np.nan)
            tracks.f2_hz = np.where(tracks.f2_hz > 0, tracks.f2_hz, np.nan)
        except Exception as exc:
            tracks.notes["f1_f2_ratio"] = f"Praat formants failed: {exc}"
    except Exception as exc:
        logger.warning("Praat analysis failed: %s", exc)
        for name in ("pitch_mean_hz", "pitch_var_hz2", "speaking_rate_syl_per_s", "jitter_local",
                     "shimmer_local", "f1_f2_ratio"):
            tracks.notes.setdefault(name, f"Praat analysis failed: {exc}")
    return tracks


def extract_features_detailed(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> FeatureSet:
    """Features of a whole chunk plus the reason for every NaN (see the module doc for methods)."""
    fs = feature_tracks(samples, sample_rate).summarize()
    if fs.reasons:
        by_reason: dict[str, list[str]] = {}
        for name, why in fs.reasons.items():
            by_reason.setdefault(why, []).append(name)
        for why, names in by_reason.items():
            logger.info("features %s are NaN: %s", ", ".join(names), why)
    return fs


def extract_features(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """Acoustic features of one chunk, named with units (see :data:`FEATURE_NAMES`, module doc).

    Args:
        samples: mono float samples in [-1, 1].
        sample_rate: their rate in Hz (resampled to 16 kHz when different).

    Returns:
        ``{name: value}`` for every name in :data:`FEATURE_NAMES`; NaN where not measurable (silence,
        too short, unvoiced), with the reason logged at INFO. Never raises on audio content.
    """
    return extract_features_detailed(samples, sample_rate).values
