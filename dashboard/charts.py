"""Altair chart builders for the dashboard: small aggregated frames in, ``alt.Chart`` out.

Heights are the whole chart's (title, axes and legend included): Streamlit fits a chart of stretched
width into its spec's height.

Every builder takes data already aggregated in SQL (``warehouse.queries_overview`` through
``dashboard.data``) or a downsampled waveform, so the specs stay small whatever the corpus size. Colours of the six base emotions are fixed here and
shared by every chart. ``trained=False`` charts say in their title that the numbers are not emotions.
"""

from __future__ import annotations

from pathlib import PurePath

import altair as alt
import numpy as np
import pandas as pd

from pipeline import BASE_EMOTIONS

#: One colour per base emotion, in BASE_EMOTIONS order (same as the Live page).
EMOTION_COLOURS = {
    "anger": "#d62728", "fear": "#9467bd", "happiness": "#ffbf00",
    "sadness": "#1f77b4", "surprise": "#17becf", "neutral": "#7f7f7f",
}
#: Points of a waveform envelope drawn per chart.
WAVEFORM_POINTS = 1200


def short_folders(folders) -> list[str]:
    """Short labels that still tell every path apart: each path's last components, as few as make it
    unique among the paths given (``calls/2024`` and ``sms/2024`` for ``/data/x/calls/2024`` and
    ``/data/x/sms/2024``; ``Actor_01`` when the last name alone is distinct). Works for files too."""
    names = [str(f) for f in folders]
    unique = sorted(set(names))
    parts = {n: PurePath(n).parts or (n,) for n in unique}
    label: dict[str, str] = {}
    for n in unique:
        mine = parts[n]
        for k in range(1, len(mine) + 1):
            tail = mine[-k:]
            if all(parts[o][-k:] != tail for o in unique if o != n):
                break
        label[n] = n if k >= len(mine) else "/".join(tail)
    return [label[n] for n in names]


def emotion_scale() -> alt.Scale:
    return alt.Scale(domain=list(BASE_EMOTIONS), range=[EMOTION_COLOURS[e] for e in BASE_EMOTIONS])


def _title(text: str, trained: bool) -> str | alt.TitleParams:
    if trained:
        return text
    return alt.TitleParams(text, subtitle=["Untrained (random-weight) models: not emotions"],
                           subtitleColor="#b03a2e")


def _title_with(text: str, trained: bool, note: str) -> alt.TitleParams:
    """``_title`` with one more subtitle line (after the untrained warning, when there is one)."""
    lines = ([] if trained else ["Untrained (random-weight) models: not emotions"]) + [note]
    return alt.TitleParams(text, subtitle=lines, subtitleColor="#b03a2e" if not trained else alt.Undefined)


def _label_title(trained: bool) -> str:
    return "dominant emotion" if trained else "top class (not an emotion)"


# --------------------------------------------------------------------------------------------------
# Overview
# --------------------------------------------------------------------------------------------------

def emotion_mix(df: pd.DataFrame, *, trained: bool = True) -> alt.Chart:
    """Share of chunks per dominant emotion. ``df``: label, dominant_chunks, share."""
    return alt.Chart(df, title=_title("Emotion mix (dominant emotion per chunk)", trained)).mark_bar().encode(
        x=alt.X("share:Q", title="share of chunks", axis=alt.Axis(format="%")),
        y=alt.Y("label:N", title=None, sort=list(BASE_EMOTIONS)),
        color=alt.Color("label:N", scale=emotion_scale(), legend=None, title=_label_title(trained)),
        tooltip=[alt.Tooltip("label:N", title=_label_title(trained)),
                 alt.Tooltip("dominant_chunks:Q", title="chunks", format=","),
                 alt.Tooltip("share:Q", format=".1%")],
    ).properties(height=300)


def mean_scores(df: pd.DataFrame, *, trained: bool = True) -> alt.LayerChart:
    """Mean probability per base emotion; labels no model had are written 'absent', never drawn as 0.

    ``df``: label, mean_score (NaN = absent), present_chunks.
    """
    data = df.assign(shown=df["mean_score"].fillna(0.0),
                     text=[("absent" if pd.isna(v) else f"{v:.2f}") for v in df["mean_score"]])
    base = alt.Chart(data)
    bars = base.mark_bar().encode(
        x=alt.X("shown:Q", title="mean probability", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("label:N", title=None, sort=list(BASE_EMOTIONS)),
        color=alt.Color("label:N", scale=emotion_scale(), legend=None),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("text:N", title="mean probability"),
                 alt.Tooltip("present_chunks:Q", title="chunks where the model has the class", format=",")],
    )
    text = base.mark_text(align="left", dx=4, color="#444").encode(
        x="shown:Q", y=alt.Y("label:N", sort=list(BASE_EMOTIONS)), text="text:N")
    return (bars + text).properties(title=_title("Mean probability per emotion", trained), height=300)


#: How a period of each over-time grain is written on the axis (periods are UTC, truncated to the grain).
_PERIOD_FORMATS = {"hour": "%Y-%m-%d %H:00", "day": "%Y-%m-%d", "week": "week of %Y-%m-%d", "month": "%Y-%m"}


def over_time(df: pd.DataFrame, grain: str, *, trained: bool = True, time_title: str = "recording time") -> alt.Chart:
    """Dominant emotions per period, stacked to 100 %. ``df``: period, label, chunks.

    The axis names what the time is (``time_title``: recording time, ingestion time or a mix, see
    ``warehouse.queries_overview.TimeBasis``) and its unit (one bar per ``grain``, UTC); each bar is labelled
    with its period.
    """
    fmt = _PERIOD_FORMATS.get(grain, "%Y-%m-%d")
    data = df.assign(when=[pd.Timestamp(p).strftime(fmt) for p in df["period"]])
    order = list(dict.fromkeys(data.sort_values("period")["when"]))
    return alt.Chart(data, title=_title(f"Emotions over time (per {grain})", trained)).mark_bar().encode(
        x=alt.X("when:O", title=f"{time_title}, one bar per {grain} (UTC)", sort=order,
                axis=alt.Axis(labelOverlap=True, labelAngle=-30)),
        y=alt.Y("chunks:Q", title="share of chunks", stack="normalize", axis=alt.Axis(format="%")),
        color=alt.Color("label:N", scale=emotion_scale(), title=_label_title(trained)),
        order=alt.Order("label:N"),
        tooltip=[alt.Tooltip("when:N", title=grain), alt.Tooltip("label:N"),
                 alt.Tooltip("chunks:Q", format=",")],
    ).properties(height=340)


def by_group(df: pd.DataFrame, group_title: str, *, trained: bool = True) -> alt.Chart:
    """Emotion mix per group (folder or file) as 100 % bars. ``df``: group, label, chunks, total, and
    optionally full (the group's full name for the tooltip when ``group`` is shortened)."""
    order = df.groupby("group")["total"].max().sort_values(ascending=False).index.tolist()
    height = 150 + 26 * len(order)
    return alt.Chart(df, title=_title(f"Emotion mix by {group_title}", trained)).mark_bar().encode(
        x=alt.X("chunks:Q", stack="normalize", title="share of chunks", axis=alt.Axis(format="%")),
        y=alt.Y("group:N", title=None, sort=order, axis=alt.Axis(labelLimit=320)),
        color=alt.Color("label:N", scale=emotion_scale(), title=_label_title(trained)),
        order=alt.Order("label:N"),
        tooltip=[alt.Tooltip("full:N" if "full" in df.columns else "group:N", title=group_title),
                 alt.Tooltip("label:N"),
                 alt.Tooltip("chunks:Q", format=","), alt.Tooltip("total:Q", title="chunks in group", format=",")],
    ).properties(height=height)


#: Separator of the rows of the per-speaker mix: "file · S1" (a speaker label only means something in its file).
SPEAKER_SEP = " · "


def speaker_order(labels) -> list[str]:
    """Speaker labels in their natural order (S1, S2, ..., S10), anything else after them."""
    def key(label: str) -> tuple[int, int, str]:
        tail = label[1:] if label[:1] == "S" else ""
        return (0, int(tail), label) if tail.isdigit() else (1, 0, label)

    return sorted({str(x) for x in labels}, key=key)


def speaker_mix(df: pd.DataFrame, *, trained: bool = True) -> alt.Chart:
    """Emotion mix of each speaker within each file, as 100 % bars, one row per (file, speaker) labelled
    "file · S1". ``df``: file_id, path, speaker, label, chunks, total (and optionally name: the file's short
    name; defaults to ``short_folders(path)``). Rows keep the order of ``df``'s files, then S1, S2, ..."""
    names = df["name"] if "name" in df.columns else pd.Series(short_folders(df["path"]), index=df.index)
    data = df.assign(name=names, row=[f"{n}{SPEAKER_SEP}{s}" for n, s in zip(names, df["speaker"])])
    order: list[str] = []
    for fid in dict.fromkeys(data["file_id"]):
        mine = data[data["file_id"] == fid]
        name = mine["name"].iloc[0]
        order += [f"{name}{SPEAKER_SEP}{s}" for s in speaker_order(mine["speaker"])]
    title = _title_with("Emotion mix per speaker, within each file", trained,
                        "S1 of one file is not S1 of another: labels are per file")
    return alt.Chart(data, title=title).mark_bar().encode(
        x=alt.X("chunks:Q", stack="normalize", title="share of the speaker's chunks", axis=alt.Axis(format="%")),
        y=alt.Y("row:N", title=None, sort=order, axis=alt.Axis(labelLimit=360)),
        color=alt.Color("label:N", scale=emotion_scale(), title=_label_title(trained)),
        order=alt.Order("label:N"),
        tooltip=[alt.Tooltip("path:N", title="file"), alt.Tooltip("speaker:N"), alt.Tooltip("label:N"),
                 alt.Tooltip("chunks:Q", format=","),
                 alt.Tooltip("total:Q", title="chunks of this speaker", format=",")],
    ).properties(height=150 + 26 * len(order))


# --------------------------------------------------------------------------------------------------
# Waveforms
# --------------------------------------------------------------------------------------------------

def envelope(samples: np.ndarray, sample_rate: int, *, points: int = WAVEFORM_POINTS,
             offset_s: float = 0.0) -> pd.DataFrame:
    """Min/max envelope of a signal in ``points`` bins: columns t (s), lo, hi."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if x.size == 0:
        return pd.DataFrame({"t": [], "lo": [], "hi": []})
    bins = max(1, min(points, x.size))
    edges = np.linspace(0, x.size, bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(x, edges[:-1])
    hi = np.maximum.reduceat(x, edges[:-1])
    t = offset_s + edges[:-1] / float(sample_rate)
    return pd.DataFrame({"t": t, "lo": lo, "hi": hi})


def _wave_layer(env: pd.DataFrame, x_title: str = "time (s)", x_scale: alt.Scale | None = None) -> alt.Chart:
    """The min/max envelope, its amplitude axis fitted to the clip's own peak (a quiet recording fills the
    chart instead of lying flat on a ±1 axis), no "nice" rounding of either axis."""
    peak = float(max(env["hi"].max(), -env["lo"].min(), 1e-4)) if len(env) else 1.0
    peak = min(1.0, peak * 1.1)
    return alt.Chart(env).mark_area(color="#34495e", opacity=0.85).encode(
        x=alt.X("t:Q", title=x_title, scale=x_scale or alt.Scale(nice=False, zero=False)),
        y=alt.Y("lo:Q", title="amplitude", scale=alt.Scale(domain=[-peak, peak], nice=False)),
        y2="hi:Q",
    )


#: Name of the timeline's click selection (``st.altair_chart(on_select=...)`` reports it by this name).
BAND_SELECTION = "band"


def waveform_timeline(env: pd.DataFrame | None, chunks: pd.DataFrame, *, trained: bool = True,
                      duration_s: float | None = None, clickable: bool = False) -> alt.LayerChart | alt.Chart:
    """The file's waveform over its chunks, each chunk shaded by its dominant emotion.

    The time axis spans exactly the clip (0 to its duration, or to its last chunk or sample when the
    duration is unknown). With ``clickable`` a click on a chunk's band selects it (point selection
    ``BAND_SELECTION`` over the field ``chunk_id``).

    Args:
        env: ``envelope`` of the file (None when the audio is not readable: only the timeline).
        chunks: chunk_id (when clickable), idx, start_s, end_s, dominant.
    """
    data = pd.DataFrame({"chunk": chunks["idx"], "start_s": chunks["start_s"], "end_s": chunks["end_s"],
                         "label": chunks["dominant"].fillna("none")})
    if "chunk_id" in chunks.columns:
        data["chunk_id"] = chunks["chunk_id"].astype("int64")
    ends = [float(duration_s or 0.0), float(data["end_s"].max()) if len(data) else 0.0,
            float(env["t"].max()) if env is not None and len(env) else 0.0]
    x_scale = alt.Scale(domain=[0.0, max(ends) or 1.0], nice=False, zero=False)
    rects = alt.Chart(data).mark_rect(opacity=0.35 if env is not None else 0.8, cursor="pointer").encode(
        x=alt.X("start_s:Q", title="time (s)", scale=x_scale), x2="end_s:Q",
        color=alt.Color("label:N", scale=emotion_scale(), title=_label_title(trained)),
        tooltip=[alt.Tooltip("chunk:Q"), alt.Tooltip("start_s:Q", format=".2f"), alt.Tooltip("end_s:Q", format=".2f"),
                 alt.Tooltip("label:N", title=_label_title(trained))],
    )
    if clickable and "chunk_id" in data.columns:
        rects = rects.add_params(alt.selection_point(name=BAND_SELECTION, fields=["chunk_id"], on="click"))
    title = _title("Waveform and chunk timeline", trained)
    if clickable:
        title = alt.TitleParams(title if isinstance(title, str) else title.text,
                                subtitle=(["Untrained (random-weight) models: not emotions"] if not trained else [])
                                + ["click a chunk's band to play it"],
                                subtitleColor="#b03a2e" if not trained else alt.Undefined)
    if env is None:
        return rects.properties(title=title, height=160)
    return alt.layer(rects, _wave_layer(env, x_scale=x_scale)).properties(title=title, height=300)


#: Row of the per-speaker timeline for chunks without a speaker label.
NO_SPEAKER = "(no label)"


def speaker_timeline(chunks: pd.DataFrame, *, trained: bool = True, duration_s: float | None = None) -> alt.Chart:
    """One row per speaker of the file (S1, S2, ...), each of their chunks a band coloured by its dominant
    emotion; chunks without a label (too short to tell) on a last row ``NO_SPEAKER``.

    ``chunks``: idx, start_s, end_s, dominant, speaker.
    """
    speakers = [s if isinstance(s, str) and s else NO_SPEAKER for s in chunks["speaker"]]
    data = pd.DataFrame({"chunk": chunks["idx"], "start_s": chunks["start_s"], "end_s": chunks["end_s"],
                         "speaker": speakers, "label": chunks["dominant"].fillna("none")})
    order = speaker_order(s for s in speakers if s != NO_SPEAKER) + ([NO_SPEAKER] if NO_SPEAKER in speakers else [])
    end = max(float(duration_s or 0.0), float(data["end_s"].max()) if len(data) else 0.0) or 1.0
    title = _title_with("Emotion timeline per speaker", trained,
                        "speakers told apart by voice within this file (S1 = first heard)")
    return alt.Chart(data, title=title).mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=alt.X("start_s:Q", title="time (s)", scale=alt.Scale(domain=[0.0, end], nice=False, zero=False)),
        x2="end_s:Q",
        y=alt.Y("speaker:N", title="speaker", sort=order),
        color=alt.Color("label:N", scale=emotion_scale(), title=_label_title(trained)),
        tooltip=[alt.Tooltip("speaker:N"), alt.Tooltip("chunk:Q"), alt.Tooltip("start_s:Q", format=".2f"),
                 alt.Tooltip("end_s:Q", format=".2f"), alt.Tooltip("label:N", title=_label_title(trained))],
    ).properties(height=max(280, 100 + 40 * len(order)))  # tall enough for the six-entry legend


def probability_over_time(chunks: pd.DataFrame, *, trained: bool = True, absent: set[str] | frozenset = frozenset(),
                          duration_s: float | None = None) -> alt.Chart:
    """Each base emotion's probability over the file, one line per emotion, one point per chunk (at its
    middle). Classes the model lacks (``absent``, or NaN throughout) are left out, never drawn as 0.

    ``chunks``: idx, start_s, end_s and one column per base emotion.
    """
    rows = []
    for r in chunks.itertuples():
        for e in BASE_EMOTIONS:
            v = getattr(r, e, None)
            if e in absent or v is None or pd.isna(v):
                continue
            rows.append({"chunk": int(r.idx), "t": (float(r.start_s) + float(r.end_s)) / 2, "emotion": e,
                         "probability": float(v), "span": f"{r.start_s:.2f}–{r.end_s:.2f} s"})
    df = pd.DataFrame(rows, columns=["chunk", "t", "emotion", "probability", "span"])
    end = max(float(duration_s or 0.0), float(chunks["end_s"].max()) if len(chunks) else 0.0) or 1.0
    return alt.Chart(df, title=_title("Probability over time per emotion", trained)).mark_line(point=True).encode(
        x=alt.X("t:Q", title="time (s), chunk middles", scale=alt.Scale(domain=[0.0, end], nice=False, zero=False)),
        y=alt.Y("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("emotion:N", scale=emotion_scale(), title="emotion" if trained else "class (not an emotion)"),
        tooltip=[alt.Tooltip("chunk:Q"), alt.Tooltip("span:N", title="time"), alt.Tooltip("emotion:N"),
                 alt.Tooltip("probability:Q", format=".2f")],
    ).properties(height=280)


def base_probabilities(df: pd.DataFrame, *, trained: bool = True) -> alt.LayerChart:
    """One chunk's six base probabilities; absent classes written 'absent'. ``df``: label, score (NaN=absent)."""
    data = df.assign(shown=df["score"].fillna(0.0),
                     text=[("absent" if pd.isna(v) else f"{v:.2f}") for v in df["score"]])
    base = alt.Chart(data)
    bars = base.mark_bar().encode(
        x=alt.X("shown:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("label:N", title=None, sort=list(df["label"])),
        color=alt.Color("label:N", scale=emotion_scale(), legend=None),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("text:N", title="probability")],
    )
    text = base.mark_text(align="left", dx=4, color="#444").encode(
        x="shown:Q", y=alt.Y("label:N", sort=list(df["label"])), text="text:N")
    return (bars + text).properties(title=_title("Base probabilities", trained), height=90 + 34 * max(1, len(df)))


# --------------------------------------------------------------------------------------------------
# Explanations
# --------------------------------------------------------------------------------------------------

def _signed(value_field: str) -> alt.Color:
    return alt.Color(f"{value_field}:Q", scale=alt.Scale(scheme="redblue", domainMid=0, reverse=True),
                     title="value")


def shap_segments(df: pd.DataFrame, target: str, tier: str) -> alt.Chart:
    """Shapley value of each time segment. ``df``: segment, start_s, end_s, value."""
    data = df.assign(sign=np.where(df["value"] >= 0, "raises", "lowers"),
                     span=[f"{a:.2f}–{b:.2f} s" for a, b in zip(df["start_s"], df["end_s"])])
    return alt.Chart(data, title=f"SHAP over time segments — p({target}), {tier} tier").mark_bar(
            stroke="white", strokeWidth=1).encode(
        x=alt.X("start_s:Q", title="time in chunk (s)"), x2="end_s:Q",
        y=alt.Y("value:Q", title="Shapley value"), y2=alt.datum(0),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["raises", "lowers"], range=["#c0392b", "#2471a3"]),
                        title=f"p({target})"),
        tooltip=[alt.Tooltip("segment:Q"), alt.Tooltip("span:N", title="time"), alt.Tooltip("value:Q", format="+.4f")],
    ).properties(height=300)


def shap_features(df: pd.DataFrame, target: str) -> alt.Chart:
    """Shapley values over acoustic features (of a surrogate). ``df``: feature, value."""
    data = df.assign(sign=np.where(df["value"] >= 0, "raises", "lowers"), mag=df["value"].abs())
    return alt.Chart(data, title=f"SHAP over acoustic features — p({target}) (surrogate)").mark_bar().encode(
        x=alt.X("value:Q", title="Shapley value"),
        y=alt.Y("feature:N", title=None, sort=alt.EncodingSortField("mag", order="descending")),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["raises", "lowers"], range=["#c0392b", "#2471a3"]),
                        title=f"p({target})"),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("value:Q", format="+.4f")],
    ).properties(height=90 + 24 * max(3, len(df)))


def lime_waveform(env: pd.DataFrame | None, lime: pd.DataFrame, target: str) -> alt.LayerChart | alt.Chart:
    """LIME weight of each segment shaded over the chunk's waveform. ``lime``: segment, start_s, end_s, weight."""
    rects = alt.Chart(lime).mark_rect(opacity=0.55).encode(
        x=alt.X("start_s:Q", title="time in chunk (s)"), x2="end_s:Q",
        color=_signed("weight"),
        tooltip=[alt.Tooltip("segment:Q"), alt.Tooltip("start_s:Q", format=".2f"), alt.Tooltip("end_s:Q", format=".2f"),
                 alt.Tooltip("weight:Q", format="+.4f")],
    )
    title = alt.TitleParams(f"LIME segment weights over the waveform — p({target})",
                            subtitle=["red: the segment raises the probability, blue: lowers it"])
    if env is None or env.empty:
        return rects.properties(title=title, height=160)
    return alt.layer(rects, _wave_layer(env, "time in chunk (s)")).properties(title=title, height=300)


def attention_heatmap(matrix: np.ndarray, title: str) -> alt.Chart:
    """One (n, n) attention map: rows = query time step, columns = key time step."""
    m = np.asarray(matrix, dtype=np.float32)
    n_q, n_k = m.shape
    q, k = np.meshgrid(np.arange(n_q), np.arange(n_k), indexing="ij")
    data = pd.DataFrame({"query": q.ravel(), "key": k.ravel(), "weight": m.ravel()})
    return alt.Chart(data, title=title).mark_rect().encode(
        x=alt.X("key:O", title="key step", axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("query:O", title="query step", axis=alt.Axis(labels=False, ticks=False)),
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="viridis"), legend=None),
        tooltip=[alt.Tooltip("query:O"), alt.Tooltip("key:O"), alt.Tooltip("weight:Q", format=".4f")],
    ).properties(width=240, height=260)


def feature_percentiles(df: pd.DataFrame) -> alt.LayerChart:
    """Where the chunk's acoustic features fall in the corpus. ``df``: feature, value, percentile, p5, p50, p95."""
    base = alt.Chart(df)
    bars = base.mark_bar(color="#5d6d7e").encode(
        x=alt.X("percentile:Q", title="percentile in corpus", scale=alt.Scale(domain=[0, 100])),
        y=alt.Y("feature:N", title=None),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("value:Q", format=".4g", title="this chunk"),
                 alt.Tooltip("percentile:Q", format=".0f"), alt.Tooltip("p5:Q", format=".4g", title="corpus 5 %"),
                 alt.Tooltip("p50:Q", format=".4g", title="corpus median"),
                 alt.Tooltip("p95:Q", format=".4g", title="corpus 95 %")],
    )
    mid = alt.Chart(pd.DataFrame({"x": [50]})).mark_rule(color="#c0392b", strokeDash=[4, 3]).encode(x="x:Q")
    title = alt.TitleParams("Acoustic features against the corpus",
                            subtitle=["percentile of this chunk's value among all chunks"])
    return (bars + mid).properties(title=title, height=100 + 22 * max(3, len(df)))
