"""File: the waveform with its chunk timeline, and per chunk the transcript, probabilities, granular and
complex emotions, an audio player and the models that produced it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, data, media, report
from dashboard.views import common, exports
from pipeline import BASE_EMOTIONS
from warehouse.rows import missing, opt_float


_AUTOPLAY = "file_autoplay_chunk"
_BAND_SEEN = "file_band_seen"


def render() -> None:
    opened = common.file_page("File", key="file")
    if opened is None:
        return
    cfg, db, file_id = opened
    with common.guard():
        info = data.file_info(db, file_id)
        if info is None:
            st.error(f"File #{file_id} is no longer in the warehouse (it was re-ingested or removed).")
            return
        chunks = data.file_chunks(db, file_id)

    trained = bool(info.get("emotion_trained"))
    absent = set(info.get("absent_labels") or [])
    if not trained:
        common.untrained_warning(info.get("emotion_model"))
    _header(info, len(chunks))
    common.caveats([(info.get("emotion_model"), trained)])
    if absent:
        st.info(f"This model has no {common.md_escape(', '.join(sorted(absent)))} class: shown as **absent**, not 0.")
    for note in info.get("notes") or []:
        st.caption("Note: " + common.md_escape(note))

    audio = media.load_audio(str(info["path"]))
    if isinstance(audio, media.AudioUnavailable):
        st.warning(f"Audio not available ({common.md_escape(audio.reason)}): showing the timeline without waveform "
                   "or player.")
        env, samples = None, None
    else:
        samples = audio.samples
        try:
            env = media.file_envelope(audio)
        except OSError:  # the file changed or vanished since it was decoded
            env = charts.envelope(samples, media.SAMPLE_RATE)
    duration = opt_float(info.get("duration_s"))
    if chunks.empty:
        st.info("No speech chunks were stored for this file.")
        if env is not None:
            st.altair_chart(charts.waveform_timeline(env, chunks.assign(dominant=[]), trained=trained,
                                                     duration_s=duration), width="stretch")
        _exports(db, file_id, info)
        return

    event = st.altair_chart(charts.waveform_timeline(env, chunks, trained=trained, duration_s=duration,
                                                     clickable=True),
                            width="stretch", on_select="rerun", selection_mode=charts.BAND_SELECTION,
                            key="file_timeline")
    _follow_click(event, chunks)
    st.altair_chart(charts.probability_over_time(chunks, trained=trained, absent=absent, duration_s=duration),
                    width="stretch")
    _speakers(chunks, trained, duration)
    st.subheader("Chunks")
    st.dataframe(_chunk_table(chunks, absent), hide_index=True, width="stretch", key="file_chunks")

    st.subheader("One chunk")
    chunk_id = common.pick_chunk(chunks, key="file", trained=trained)
    if chunk_id is not None:
        row = chunks[chunks["chunk_id"] == chunk_id].iloc[0]
        _chunk_panel(db, info, row, absent, samples, trained)
    _exports(db, file_id, info)


def clicked_chunk(event) -> int | None:
    """The chunk_id of the band clicked in the timeline (``st.altair_chart``'s selection event), or None."""
    selection = (event.get("selection") if isinstance(event, dict) else getattr(event, "selection", None)) or {}
    try:
        picked = selection.get(charts.BAND_SELECTION) or []
    except AttributeError:
        return None
    for point in picked:
        if isinstance(point, dict) and point.get("chunk_id") is not None:
            return int(point["chunk_id"])
    return None


def _follow_click(event, chunks: pd.DataFrame) -> None:
    """A click on a band picks that chunk and plays it (once per click: the chart keeps its selection)."""
    picked = clicked_chunk(event)
    if picked == st.session_state.get(_BAND_SEEN):
        return
    st.session_state[_BAND_SEEN] = picked
    if picked is not None and picked in set(int(x) for x in chunks["chunk_id"]):
        common.set_chunk(picked)
        st.session_state[_AUTOPLAY] = picked


def _header(info: dict, n_chunks: int) -> None:
    st.subheader(common.md_escape(Path(str(info["path"])).name), anchor=False)
    st.code(str(info["path"]), language=None, wrap_lines=True)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Duration (s)", f"{(opt_float(info.get('duration_s')) or 0):.1f}")
    c2.metric("Chunks", n_chunks)
    c3.metric("Emotion model", Path(str(info.get("emotion_model") or "?")).name,
              help=common.md_escape(f"{info.get('emotion_model')} — "
                                    + ("trained" if info.get("emotion_trained") else "UNTRAINED (random weights)")))
    c4.metric("Whisper", Path(str(info.get("whisper_model") or "off")).name,
              help=common.md_escape(str(info.get("whisper_model") or "transcription was off")))
    bits = [f"source: {info.get('source')}", f"recorded: {_ts(info.get('recorded_at'))}",
            f"ingested: {_ts(info.get('ingested_at'))}", f"run: {info.get('run_id')}",
            f"sample rate: {info.get('sample_rate')} Hz", f"channels: {info.get('channels')}"]
    if not missing(info.get("reused_from")):
        bits.append(f"results copied from file #{int(info['reused_from'])} (same content)")
    st.caption(common.md_escape(" · ".join(bits)))


def speaker_labels(chunks: pd.DataFrame) -> list[str]:
    """The file's speaker labels (S1, S2, ... in natural order); empty when none was stored."""
    if "speaker" not in chunks.columns:
        return []
    return charts.speaker_order(s for s in chunks["speaker"] if isinstance(s, str) and s)


def _speakers(chunks: pd.DataFrame, trained: bool, duration: float | None) -> None:
    """Two or more voices: an emotion timeline per speaker. One voice, or no labels: one quiet line."""
    labels = speaker_labels(chunks)
    unlabelled = int(sum(1 for s in chunks.get("speaker", []) if not (isinstance(s, str) and s)))
    if len(labels) >= 2:
        st.altair_chart(charts.speaker_timeline(chunks, trained=trained, duration_s=duration), width="stretch")
        st.caption(f"{len(labels)} voices told apart within this file" +
                   (f"; {unlabelled} chunk(s) too short to tell are on the row {charts.NO_SPEAKER}."
                    if unlabelled else "."))
    elif labels:
        st.caption("Speakers: one voice" + (f" ({unlabelled} chunk(s) too short to tell)." if unlabelled else "."))
    else:
        st.caption("Speakers: speaker labels were not computed for this file.")


def _ts(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "unknown"
    return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M UTC")


def _chunk_table(chunks: pd.DataFrame, absent: set[str]) -> pd.DataFrame:
    out = pd.DataFrame({
        "chunk": chunks["idx"], "start (s)": chunks["start_s"].round(2), "end (s)": chunks["end_s"].round(2),
        "dominant": chunks["dominant"],
        "speaker": chunks["speaker"].fillna("") if "speaker" in chunks.columns else "",
    })
    for e in BASE_EMOTIONS:
        out[e] = [common.base_cells(v, e in absent) for v in chunks[e]]
    for name, col in (("granular", "granular"), ("complex", "complex"), ("transcript", "transcript"),
                      ("language", "language"), ("explanation", "tiers")):
        out[name] = chunks[col].fillna("")
    return out


def _chunk_panel(db: str, info: dict, row: pd.Series, absent: set[str], samples, trained: bool) -> None:
    chunk_id = int(row["chunk_id"])
    emotions = data.chunk_emotions(db, chunk_id)
    left, right = st.columns([3, 2])
    with left:
        base = emotions[emotions["kind"] == "base"][["label", "score"]]
        st.altair_chart(charts.base_probabilities(base, trained=trained), width="stretch")
        extra = emotions[emotions["kind"] == "extra"]
        if len(extra):
            st.caption(common.md_escape("Other labels of this model (outside the six): "
                                        + ", ".join(f"{r.label} {r.score:.2f}" for r in extra.itertuples())))
    with right:
        speaker = row.get("speaker")
        said = f" · speaker {common.md_escape(speaker)}" if isinstance(speaker, str) and speaker else ""
        st.markdown(f"**Chunk {int(row['idx'])}** · {row['start_s']:.2f}–{row['end_s']:.2f} s{said}")
        if samples is not None:
            clip = media.chunk_samples(samples, float(row["start_s"]), float(row["end_s"]))
            autoplay = st.session_state.pop(_AUTOPLAY, None) == chunk_id  # chosen by a click on its band
            st.audio(clip, sample_rate=media.SAMPLE_RATE, autoplay=autoplay)
        transcript = row["transcript"] if isinstance(row["transcript"], str) else None
        if transcript is None:
            st.caption("No transcript (transcription was off).")
        else:
            lang = row["language"] if isinstance(row["language"], str) else "?"
            st.markdown(f"**Transcript** ({common.md_escape(lang)}):")
            st.text(transcript.strip() or "(empty)")
        gran = emotions[emotions["kind"] == "granular"]
        comp = emotions[emotions["kind"] == "complex"]
        tag = "" if trained else " *(untrained model: not emotions)*"
        st.markdown("**Granular:** " + (common.md_escape(", ".join(f"{r.label} {r.score:.2f} ({r.granular_kind})"
                                                                   for r in gran.itertuples())) or "none") + tag)
        st.markdown("**Complex:** " + (common.md_escape(", ".join(f"{r.label} {r.score:.2f}"
                                                                  for r in comp.itertuples())) or "none") + tag)
        tiers = row["tiers"] if isinstance(row["tiers"], str) else "none stored"
        st.caption(common.md_escape(
            f"Produced by emotion model {info.get('emotion_model')} ({'trained' if trained else 'untrained'}), "
            f"Whisper {info.get('whisper_model') or 'off'}; explanation: {tiers}."))
        if st.button("Explain this chunk", key="file_explain"):
            common.set_chunk(chunk_id)
            st.switch_page(common.PAGES["explain"],
                           query_params={"file": str(int(info["file_id"])), "chunk": str(chunk_id)})
    words = data.chunk_words(db, chunk_id)
    if len(words):
        with st.expander("Word timings"):
            st.dataframe(words, hide_index=True, width="stretch")


def _exports(db: str, file_id: int, info: dict) -> None:
    from dashboard import auth

    if not auth.may_export():  # downloads are for analysts (dashboard/auth.py), as on the Overview
        return
    st.subheader("Export this file")
    name = Path(str(info["path"])).name
    stem = Path(name).stem
    exports.offer_all([
        exports.Export("JSON", lambda: report.file_json(db, file_id), f"{stem}.emotivoice.json", "application/json",
                       "file_json", f"The JSON export of {name}", eager=True),
        exports.Export("CSV", lambda: report.file_csv(db, file_id), f"{stem}.emotivoice.csv", "text/csv",
                       "file_csv", f"The CSV export of {name}", eager=True),
        exports.Export("PDF report", lambda: report.file_pdf(db, file_id), f"{stem}.emotivoice.pdf",
                       "application/pdf", "file_pdf", f"The PDF report of {name}"),
    ], token=(file_id, data.version(db)))
