"""PNG pictures of results, drawn on demand with matplotlib's Agg backend (no display, no pyplot state).

Every function returns PNG bytes. Each PNG carries a plain-text ``Title`` and ``Description`` (PNG tEXt
chunks) saying what it shows — usable as alt text by exports and the dashboard. Pictures of an
untrained model's output say that the scores are not emotions.

- :func:`plot_emotion_distribution` — the six base emotions (absent classes marked, not drawn as 0).
- :func:`plot_shap_segments` — Shapley value of each time segment, with f(none) -> f(all).
- :func:`plot_shap_features` — Shapley values over acoustic features, with their method and R².
- :func:`plot_lime_waveform` — the chunk's waveform with segments shaded by LIME weight.
- :func:`plot_attention` — per-layer attention heatmaps and the attention rollout.
"""

from __future__ import annotations

import io
import math
from typing import Mapping

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.types import BASE_EMOTIONS, Explanation

POS_COLOR = "#c0392b"
NEG_COLOR = "#2471a3"
DPI = 100


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig, title: str, description: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Title": title, "Description": description})
    return buf.getvalue()


def _message(title: str, text: str) -> bytes:
    fig = _figure(6, 1.6)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    ax.text(0.5, 0.45, _wrap(text, 90), ha="center", va="center", fontsize=9, color="#555555",
            transform=ax.transAxes)
    return _png(fig, title, text)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) if text else ""


def _not_available(why: str | None) -> str:
    why = (why or "").strip()
    if why.startswith("not computed:"):
        why = why[len("not computed:"):].strip()
    return f"not available: {why}" if why else "not available"


def _bar_colors(values) -> list[str]:
    return [POS_COLOR if v >= 0 else NEG_COLOR for v in values]


def plot_emotion_distribution(base: Mapping[str, float | None], extra: Mapping[str, float] | None = None, *,
                              trained: bool = True, title: str | None = None) -> bytes:
    """Bar chart of the six base emotions (plus extra model labels); None = absent from the model.

    Args:
        base: canonical emotion -> probability, or None where the model lacks the class.
        extra: probabilities of model labels outside the six.
        trained: False for a randomly initialised model (the title then says the scores are not emotions).
        title: headline; default "Emotion distribution".
    """
    names = list(BASE_EMOTIONS) + [k for k in (extra or {})]
    values = [base.get(e) for e in BASE_EMOTIONS] + [float(v) for v in (extra or {}).values()]
    headline = title or "Emotion distribution"
    if not trained:
        headline += " — untrained model: scores are not emotions"
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    xs = np.arange(len(names))
    heights = [0.0 if v is None else float(v) for v in values]
    colors = ["#888888" if not trained else ("#5d6d7e" if i >= len(BASE_EMOTIONS) else "#7d3c98")
              for i in range(len(names))]
    ax.bar(xs, heights, color=colors)
    for x, v in zip(xs, values):
        label = "absent" if v is None else f"{v:.2f}"
        ax.text(x, (0 if v is None else v) + 0.01, label, ha="center", va="bottom", fontsize=8,
                color="#999999" if v is None else "#222222")
    ax.set_xticks(xs, names, rotation=20)
    ax.set_ylim(0, max(1.0, max(heights, default=0) * 1.15))
    ax.set_ylabel("probability")
    ax.set_title(headline, fontsize=10)
    present = {n: v for n, v in zip(names, values) if v is not None}
    absent = [n for n, v in zip(names, values) if v is None]
    desc = headline + ": " + ", ".join(f"{n} {v:.2f}" for n, v in present.items())
    if absent:
        desc += "; absent from the model: " + ", ".join(absent)
    return _png(fig, headline, desc)


def _duration(exp: Explanation) -> float | None:
    segs = exp.shap_segments or exp.lime_segments
    return segs[-1].end_s if segs else None


def plot_shap_segments(exp: Explanation) -> bytes:
    """Bars of each time segment's Shapley value for the explained label, f(none) -> f(all) in the title."""
    title = f"SHAP over time segments — p({exp.target_label})"
    if not exp.shap_segments:
        return _message(title, _not_available(exp.shap_method))
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    vals = [s.value for s in exp.shap_segments]
    centres = [(s.start_s + s.end_s) / 2 for s in exp.shap_segments]
    widths = [(s.end_s - s.start_s) * 0.9 for s in exp.shap_segments]
    ax.bar(centres, vals, width=widths, color=_bar_colors(vals))
    ax.axhline(0, color="#444444", lw=0.8)
    ax.set_xlabel("time in chunk (s)")
    ax.set_ylabel("Shapley value")
    total = sum(vals)
    sub = (f"{exp.tier} tier: f(none) = {exp.shap_base_value:.3f} -> f(all) = {exp.shap_full_value:.3f} "
           f"(sum of values {total:+.3f})")
    ax.set_title(f"{title}\n{sub}", fontsize=9)
    top = int(np.argmax(vals))
    desc = (f"{title}. {sub}. Largest support for {exp.target_label}: segment {top} "
            f"({exp.shap_segments[top].start_s:.1f}-{exp.shap_segments[top].end_s:.1f} s). "
            f"Method: {exp.shap_method}")
    return _png(fig, title, desc)


def plot_shap_features(exp: Explanation, *, top: int = 12) -> bytes:
    """Horizontal bars of Shapley values over acoustic features, with the method and the surrogate's R²."""
    title = f"SHAP over acoustic features — p({exp.target_label})"
    if not exp.shap_features:
        return _message(title, _not_available(exp.shap_features_method or "not computed for this chunk"))
    items = sorted(exp.shap_features.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top]
    items = [(k, v) for k, v in items if math.isfinite(v)][::-1]
    fig = _figure(6.4, 0.9 + 0.32 * len(items))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color=_bar_colors([v for _, v in items]))
    ax.axvline(0, color="#444444", lw=0.8)
    ax.set_xlabel("Shapley value (probability)")
    r2 = "n/a" if exp.surrogate_r2 is None else f"{exp.surrogate_r2:.2f}"
    ax.set_title(f"{title}\nsurrogate fidelity: R² on held-out chunks = {r2}", fontsize=9)
    desc = (f"{title}; surrogate R² on held-out chunks {r2}; "
            + ", ".join(f"{k} {v:+.3f}" for k, v in items[::-1]) + f". Method: {exp.shap_features_method}")
    return _png(fig, title, desc)


def plot_lime_waveform(samples: np.ndarray, exp: Explanation, sample_rate: int = SAMPLE_RATE) -> bytes:
    """The chunk's waveform with each segment shaded by its LIME weight (red: supports the label)."""
    title = f"LIME segment weights — p({exp.target_label})"
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not exp.lime_segments or x.size == 0:
        return _message(title, _not_available(exp.lime_method))
    fig = _figure(7.0, 2.8)
    ax = fig.add_subplot()
    weights = np.array([s.value for s in exp.lime_segments])
    scale = float(np.max(np.abs(weights))) or 1.0
    for s, w in zip(exp.lime_segments, weights):
        ax.axvspan(s.start_s, s.end_s, color=POS_COLOR if w >= 0 else NEG_COLOR, alpha=0.08 + 0.5 * abs(w) / scale,
                   lw=0)
        ax.text((s.start_s + s.end_s) / 2, 1.02, f"{w:+.2f}", ha="center", va="bottom", fontsize=7,
                transform=ax.get_xaxis_transform())
    step = max(1, x.size // 4000)  # envelope-preserving decimation for drawing
    t = np.arange(x.size) / sample_rate
    if step > 1:
        n = x.size // step * step
        env = x[:n].reshape(-1, step)
        ax.fill_between(t[:n:step], env.min(axis=1), env.max(axis=1), color="#222222", lw=0)
    else:
        ax.plot(t, x, color="#222222", lw=0.6)
    ax.set_xlim(0, x.size / sample_rate)
    ax.set_xlabel("time in chunk (s)")
    ax.set_yticks([])
    score = "n/a" if exp.lime_score is None else f"{exp.lime_score:.2f}"
    ax.set_title(f"{title} (local fit R² = {score})", fontsize=9, pad=14)
    top = int(np.argmax(weights))
    desc = (f"{title}; local fit R² {score}; strongest support in segment {top} "
            f"({exp.lime_segments[top].start_s:.1f}-{exp.lime_segments[top].end_s:.1f} s). "
            f"Method: {exp.lime_method}")
    return _png(fig, title, desc)


def plot_attention(exp: Explanation, *, max_layers: int = 12) -> bytes:
    """Heatmaps of each layer's mean-over-heads attention and of the attention rollout."""
    title = "Attention (mean over heads) and rollout"
    if exp.attention is None and exp.attention_rollout is None:
        return _message(title, exp.attention_note or "no attention maps")
    layers = [] if exp.attention is None else list(np.asarray(exp.attention, dtype=np.float32))
    if len(layers) > max_layers:  # keep the first and last layers, evenly spaced
        idx = np.unique(np.linspace(0, len(layers) - 1, max_layers).round().astype(int))
        picked = [(int(i), layers[i]) for i in idx]
    else:
        picked = list(enumerate(layers))
    panels = [(f"layer {i + 1}", m) for i, m in picked]
    if exp.attention_rollout is not None:
        panels.append(("rollout", np.asarray(exp.attention_rollout, dtype=np.float32)))
    cols = min(4, len(panels))
    rows = int(math.ceil(len(panels) / cols))
    fig = _figure(2.3 * cols + 0.6, 2.2 * rows + 0.5)
    dur = _duration(exp)
    extent = None if dur is None else (0, dur, dur, 0)
    for k, (name, m) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(m, cmap="magma", aspect="auto", extent=extent, interpolation="nearest")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
        if k % cols == 0:
            ax.set_ylabel("query time (s)" if dur else "query step", fontsize=7)
        if k >= len(panels) - cols:
            ax.set_xlabel("key time (s)" if dur else "key step", fontsize=7)
    fig.suptitle(f"{title} (colour scaled per panel: bright = more attention)", fontsize=10)
    desc = f"{title}: {len(picked)} layer map(s)" + (" and the rollout" if exp.attention_rollout is not None else "")
    if exp.attention_note:
        desc += f". {exp.attention_note}"
    return _png(fig, title, desc)
