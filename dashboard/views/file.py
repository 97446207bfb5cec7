"""File: the waveform with its chunk timeline, and per chunk the transcript, probabilities, granular and
complex emotions, an audio player and the models that produced it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, data, media, report
from dashboard.views import common
from pipeline.types import BASE_EMOTIONS


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
    if absent:
        st.info(f"This model has no {', '.join(sorted(absent))} class: shown as **absent**, not 0.")
    for note in info.get("notes") or []:
        st.caption(f"Note: {note}")

    audio = media.load_audio(str(info["path"]))
    if isinstance(audio, media.AudioUnavailable):
        st.warning(f"Audio not available ({audio.reason}): showing the timeline without waveform or player.")
        env, samples = None, None
    else:
        samples = audio.samples
        try:
            env = media.file_envelope(audio)
        except OSError:  # the file changed or vanished since it was decoded
            env = charts.envelope(samples, media.SAMPLE_RATE)
    if chunks.empty:
        st.info("No speech chunks were stored for this file.")
        if env is not None:
            st.altair_chart(charts.waveform_timeline(env, chunks.assign(dominant=[]), trained=trained,
                                                     duration_s=info.get("duration_s")), width="stretch")
        _exports(db, file_id, info)
        return

    st.altair_chart(charts.waveform_timeline(env, chunks, trained=trained, duration_s=info.get("duration_s")),
                    width="stretch")
    st.subheader("Chunks")
    st.dataframe(_chunk_table(chunks, absent), hide_index=True, width="stretch", key="file_chunks")

    st.subheader("One chunk")
    chunk_id = common.pick_chunk(chunks, key="file", trained=trained)
    if chunk_id is not None:
        row = chunks[chunks["chunk_id"] == chunk_id].iloc[0]
        _chunk_panel(db, info, row, absent, samples, trained)
    _exports(db, file_id, info)


def _header(info: dict, n_chunks: int) -> None:
    st.markdown(f"**{Path(str(info['path'])).name}** · `{info['path']}`")
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Duration (s)", f"{(info.get('duration_s') or 0):.1f}")
    c2.metric("Chunks", n_chunks)
    c3.metric("Emotion model", Path(str(info.get("emotion_model") or "?")).name,
              help=f"{info.get('emotion_model')} — "
                   + ("trained" if info.get("emotion_trained") else "UNTRAINED (random weights)"))
    c4.metric("Whisper", Path(str(info.get("whisper_model") or "off")).name, help=str(info.get("whisper_model")))
    bits = [f"source: {info.get('source')}", f"recorded: {_ts(info.get('recorded_at'))}",
            f"ingested: {_ts(info.get('ingested_at'))}", f"run: {info.get('run_id')}",
            f"sample rate: {info.get('sample_rate')} Hz", f"channels: {info.get('channels')}"]
    if info.get("reused_from") is not None and not pd.isna(info.get("reused_from")):
        bits.append(f"results copied from file #{int(info['reused_from'])} (same content)")
    st.caption(" · ".join(bits))


def _ts(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "unknown"
    return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M UTC")


def _chunk_table(chunks: pd.DataFrame, absent: set[str]) -> pd.DataFrame:
    out = pd.DataFrame({
        "chunk": chunks["idx"], "start (s)": chunks["start_s"].round(2), "end (s)": chunks["end_s"].round(2),
        "dominant": chunks["dominant"],
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
            st.caption("Other labels of this model (outside the six): "
                       + ", ".join(f"{r.label} {r.score:.2f}" for r in extra.itertuples()))
    with right:
        st.markdown(f"**Chunk {int(row['idx'])}** · {row['start_s']:.2f}–{row['end_s']:.2f} s")
        if samples is not None:
            clip = media.chunk_samples(samples, float(row["start_s"]), float(row["end_s"]))
            st.audio(clip, sample_rate=media.SAMPLE_RATE)
        transcript = row["transcript"] if isinstance(row["transcript"], str) else None
        if transcript is None:
            st.caption("No transcript (transcription was off).")
        else:
            lang = row["language"] if isinstance(row["language"], str) else "?"
            st.markdown(f"**Transcript** ({lang}): {transcript.strip() or '*(empty)*'}")
        gran = emotions[emotions["kind"] == "granular"]
        comp = emotions[emotions["kind"] == "complex"]
        tag = "" if trained else " *(untrained model: not emotions)*"
        st.markdown("**Granular:** " + (", ".join(f"{r.label} {r.score:.2f} ({r.granular_kind})"
                                                  for r in gran.itertuples()) or "none") + tag)
        st.markdown("**Complex:** " + (", ".join(f"{r.label} {r.score:.2f}" for r in comp.itertuples()) or "none")
                    + tag)
        st.caption(f"Produced by emotion model `{info.get('emotion_model')}` "
                   f"({'trained' if trained else 'untrained'}), Whisper `{info.get('whisper_model') or 'off'}`; "
                   f"explanation: {row['tiers'] if isinstance(row['tiers'], str) else 'none stored'}.")
        if st.button("Explain this chunk", key="file_explain"):
            common.set_chunk(chunk_id)
            st.switch_page(common.PAGES["explain"],
                           query_params={"file": str(int(info["file_id"])), "chunk": str(chunk_id)})
    words = data.chunk_words(db, chunk_id)
    if len(words):
        with st.expander("Word timings"):
            st.dataframe(words, hide_index=True, width="stretch")


def _exports(db: str, file_id: int, info: dict) -> None:
    st.subheader("Export this file")
    stem = Path(str(info["path"])).stem
    c1, c2, c3 = st.columns(3)
    c1.download_button("JSON", lambda: report.file_json(db, file_id), file_name=f"{stem}.emotivoice.json",
                       mime="application/json", key="file_json", on_click="ignore")
    c2.download_button("CSV", lambda: report.file_csv(db, file_id), file_name=f"{stem}.emotivoice.csv",
                       mime="text/csv", key="file_csv", on_click="ignore")
    c3.download_button("PDF report", lambda: report.file_pdf(db, file_id), file_name=f"{stem}.emotivoice.pdf",
                       mime="application/pdf", key="file_pdf", on_click="ignore")
