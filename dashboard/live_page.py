"""The Live page: microphone -> WebRTC -> the same pipeline as files, results within about a second.

``render(config)`` draws the page; Stop calls ``flows.live.save_session`` (recording as FLAC under
``<data_dir>/live/``, result into the warehouse as one file with ``source='live'``): the page writes
no rows itself.

How the pieces meet (the browser's audio never blocks on a model):

* ``streamlit_webrtc.webrtc_streamer`` in SENDONLY mode, audio only, with the browser's echo
  cancellation, noise suppression and auto gain off (they change levels, and so the scores). ICE
  servers come from ``config.ice_servers`` only; an empty list is passed explicitly, since otherwise
  the library adds a public STUN server by itself (see docs/live.md for deployments).
* Its ``queued_audio_frames_callback`` runs on a WebRTC thread and only calls
  ``LiveSession.push_frames`` (buffering + end-pointing, see ``flows.live``); a worker thread of the
  session runs the models. The queued callback receives every frame (the plain per-frame callback
  drops all but the newest when it falls behind).
* The callback cannot touch Streamlit, so the session object lives in ``st.session_state`` and an
  ``st.fragment(run_every=REFRESH_S)`` redraws from it while the stream plays; when it first draws a
  result it stamps the time, which gives the on-screen latency shown on the page.
* Fallback when WebRTC cannot connect: ``st.audio_input`` records a clip in the browser, which is
  pushed through a LiveSession exactly as the stream would be and saved the same way.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

from dashboard.safe_text import md_escape
from flows.live import LiveSession, SavedSession, analyse_recording, save_in_background, save_session, warm_up
from pipeline import BASE_EMOTIONS, Config, FileResult, load_config
from pipeline.live_results import LiveResult, timeline_rows, transcript_lines

logger = logging.getLogger(__name__)

#: Seconds between redraws of the live panel while streaming.
REFRESH_S = 0.25
#: Seconds of history in the rolling emotion chart.
CHART_WINDOW_S = 60.0
#: Widget key of the WebRTC component (the browser test finds its iframe by title).
WEBRTC_KEY = "emotivoice-live"
#: Audio only, with the browser's processing off: echo cancellation, noise suppression and automatic
#: gain change the levels the model hears (a test tone read 0.107 RMS instead of 0.177 with them on).
MEDIA_CONSTRAINTS: dict[str, Any] = {
    "audio": {"echoCancellation": False, "noiseSuppression": False, "autoGainControl": False},
    "video": False,
}
_SESSION = "live_session"
_LAST = "live_last_saved"
_FALLBACK_DONE = "live_fallback_done"
_SEEN_PLAYING = "live_seen_playing"  # id of the session a run last saw playing

EMOTION_COLOURS = {
    "anger": "#d62728", "fear": "#9467bd", "happiness": "#ffbf00",
    "sadness": "#1f77b4", "surprise": "#17becf", "neutral": "#7f7f7f",
}


# --------------------------------------------------------------------------------------------------
# Pure helpers (tested without a browser)
# --------------------------------------------------------------------------------------------------

def ice_server(url: str) -> dict[str, Any]:
    """One ``config.ice_servers`` entry -> an RTCIceServer dict.

    ``stun:host:port`` as is; TURN credentials may be written into the URL as
    ``turn:USER:PASSWORD@host:port[?transport=udp|tcp]`` (also ``turns:``).
    """
    url = url.strip()
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in ("stun", "stuns", "turn", "turns"):
        raise ValueError(f"config ice_servers: {url!r} is not a stun:/turn: URL")
    if "@" in rest and scheme.lower().startswith("turn"):
        cred, _, host = rest.rpartition("@")
        user, _, password = cred.partition(":")
        return {"urls": [f"{scheme}:{host}"], "username": user, "credential": password}
    return {"urls": [url]}


def rtc_configuration(config: Config) -> dict[str, Any]:
    """The RTCConfiguration for both browser and server: exactly the configured ICE servers.

    An explicit empty list matters: without ``iceServers`` streamlit-webrtc adds a public STUN server
    (an outside request); with none, host candidates work on localhost and the LAN.
    """
    return {"iceServers": [ice_server(u) for u in config.ice_servers]}


def _fmt_time(s: float) -> str:
    m, sec = divmod(max(0.0, s), 60)
    return f"{int(m):02d}:{sec:04.1f}"


def _fmt_s(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} s"


# --------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------

def _chart(results: list[LiveResult], trained: bool, now_s: float | None):
    import altair as alt
    import pandas as pd

    rows = timeline_rows(results)
    if not rows:
        return None
    df = pd.DataFrame(rows)
    end = max(now_s or 0.0, float(df["end_s"].max()))
    df = df[df["time_s"] >= end - CHART_WINDOW_S]
    present = [e for e in BASE_EMOTIONS if e in set(df["emotion"])]
    title = "Emotion scores per chunk" if trained else "Scores of an UNTRAINED model (not emotions)"
    return (
        alt.Chart(df, title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X("time_s:Q", title="session time (s)", scale=alt.Scale(domain=[max(0.0, end - CHART_WINDOW_S), end])),
            y=alt.Y("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("emotion:N", scale=alt.Scale(domain=present,
                                                         range=[EMOTION_COLOURS[e] for e in present])),
            tooltip=["emotion", alt.Tooltip("probability:Q", format=".2f"), "start_s", "end_s"],
        )
        .properties(height=260)
    )


def _draw_results(st, session: LiveSession | None, results: list[LiveResult], *, trained: bool,
                  playing: bool, key: str) -> None:
    if session is not None:
        session.mark_shown(results)  # drawn in this pass: stamp before the stats so the latency shows now
        stats = session.stats()
        cols = st.columns([1, 1, 1, 1, 2, 1])
        cols[0].metric("Heard", f"{stats.received_s:.1f} s", "speaking" if stats.in_speech else None,
                       delta_color="off")
        cols[1].metric("Analysed", stats.analysed, help="Utterances analysed so far")
        cols[2].metric("Waiting", stats.waiting + (1 if stats.busy else 0), help="Utterances in analysis or queued")
        cols[3].metric("Dropped", stats.dropped_overload,
                       help="When analysis falls behind, the oldest waiting utterance is dropped so the "
                            "newest results stay within about a second; dropped ones are analysed at Stop.")
        cols[4].metric("Latency p50 / p95", f"{_fmt_s(stats.display_latency_p50_s)} / "
                                            f"{_fmt_s(stats.display_latency_p95_s)}",
                       help="End of utterance (as the end-pointer decides it) -> result on screen. "
                            f"Result ready: p50 {_fmt_s(stats.latency_p50_s)}, p95 {_fmt_s(stats.latency_p95_s)}. "
                            f"The end-pointer waits {session.config.live_silence_ms} ms of silence first. "
                            "Emotions come first; Whisper's words follow"
                            + (f" (p50 {_fmt_s(stats.transcript_latency_p50_s)}, "
                               f"p95 {_fmt_s(stats.transcript_latency_p95_s)} after the end of the utterance)."
                               if stats.transcript_latency_p50_s is not None else "."))
        cols[5].metric("Blips", stats.dropped_short,
                       help=f"Sounds under {session.config.live_min_utterance_s:g} s of speech, ignored")
        if stats.last_error:
            st.error(f"{stats.errors} utterance(s) failed to analyse; last: {md_escape(stats.last_error)}")
        if stats.last_transcript_error:
            st.warning(f"Words missing for {stats.transcript_errors} utterance(s) (their emotions are shown); "
                       f"last: {md_escape(stats.last_transcript_error)}")
        if playing and not results:
            st.info("Listening… speak; a result appears after each pause "
                    f"({session.config.live_silence_ms} ms of silence) or every "
                    f"{session.config.live_max_utterance_s:g} s of continuous speech.")
    lines = transcript_lines(results)
    if lines:
        st.subheader("Transcript")
        md = []
        for ln in reversed(lines[-50:]):
            text = md_escape(ln.text) if ln.text else ("*(transcribing…)*" if ln.pending else "*(no transcript)*")
            tag = "–" if ln.dominant is None else f"**{ln.dominant}** {ln.confidence:.2f}"
            extra = []
            if ln.granular:
                extra.append("granular: " + ", ".join(ln.granular))
            if ln.complex:
                extra.append("complex: " + ", ".join(ln.complex))
            md.append(f"- `{_fmt_time(ln.start_s)}–{_fmt_time(ln.end_s)}` {text} — {tag}"
                      + (f" · {' · '.join(extra)}" if extra else ""))
        st.markdown("\n".join(md))
    # The chart last: it is the slowest element, and a redraw that a busy machine cuts short (the panel
    # redraws every REFRESH_S) should still have shown the words and emotions above it.
    chart = _chart(results, trained, session.duration_s if session is not None else None)
    if chart is not None:
        st.altair_chart(chart, width="stretch", key=f"{key}_chart")


_WARMED: set[str] = set()
_WARM_LOCK = threading.Lock()


def _warm_once(config: Config, analyzer) -> None:
    """Pay the first analysis' one-off costs (library imports, kernel compilation: ~30 s on a busy
    2-core machine) once per process and configuration, before the first utterance needs them."""
    key = config.to_json()
    with _WARM_LOCK:
        if key in _WARMED:
            return
        took = warm_up(analyzer.analyze_signal, torch_threads=config.live_threads)
        _WARMED.add(key)
        logger.info("live: warm-up analysis took %.1f s", took)


def whisper_off_reason(config: Config, whisper_name: str | None) -> str | None:
    """Why the live tab transcribes nothing, in one line; None when Whisper is on."""
    if whisper_name is None:
        return (f"Whisper is off: the configuration sets whisper_model = {config.whisper_model!r} "
                "(set it to 'auto' or a Whisper size to get words).")
    if whisper_name.lower().startswith("none:"):
        return "Whisper is off: " + whisper_name.split(":", 1)[1].strip()
    return None


def _ready(config: Config, analyzer) -> bool:
    return (analyzer.emotion_model is not None and analyzer._whisper_loaded
            and config.to_json() in _WARMED)


def _load_models(st, config: Config):
    """Load the live models (once per process), showing each step while it runs; returns the analyzer."""
    import time

    from pipeline import get_analyzer

    analyzer = get_analyzer(config)
    if _ready(config, analyzer):
        return analyzer
    with st.status("Loading models…", expanded=True) as box:
        steps = (
            (f"Emotion model {config.emotion_model}", analyzer.emotion),
            (f"Whisper ({config.whisper_model})", analyzer.whisper),
            ("Warm-up analysis (first-run compilation, once per server)", lambda: _warm_once(config, analyzer)),
        )
        for what, run in steps:
            line = st.empty()
            line.text(f"{what}: loading…")
            t0 = time.monotonic()
            run()
            line.text(f"{what}: ready ({time.monotonic() - t0:.1f} s)")
        box.update(label="Models ready", state="complete", expanded=False)
    return analyzer


def _model_header(st, config: Config):
    """Model names (loads the models once per process, showing what is loading); None when a model is
    unavailable."""
    from dashboard.caveats import INTENDED_USE, model_caveat

    try:
        analyzer = _load_models(st, config)
        info = analyzer.model_info()
    except Exception as exc:  # ModelUnavailableError says which model and how to get it
        logger.exception("live: models could not load")
        st.error("The live tab cannot run: " + md_escape(exc))
        return None
    st.caption(md_escape(f"Emotion model: {info.emotion} · Whisper: {info.whisper or 'off'} · "
                         f"explanations: fast · Whisper beam: {config.live_beam_size}"))
    off = whisper_off_reason(config, info.whisper)
    if off:
        st.info(md_escape(off))
    if not info.emotion_trained:
        st.warning(f"The emotion model {md_escape(info.emotion)} is untrained (random weights): its scores are "
                   "not emotions.")
    if info.absent_labels:
        st.caption(md_escape("Not predicted by this model: " + ", ".join(info.absent_labels)))
    st.caption(md_escape(model_caveat(info.emotion, info.emotion_trained)))
    st.caption(md_escape(INTENDED_USE))
    return info


def _saved_message(st, saved: SavedSession) -> None:
    n = len(saved.result.chunks)
    if saved.stored:
        st.success(md_escape(f"Saved session {saved.session_id}: {saved.path} ({saved.result.duration_s:.1f} s, "
                             f"{n} chunk(s)). It is listed on the File and Explain pages."))
    else:
        st.warning(md_escape(f"Recording saved to {saved.path} ({n} chunk(s)), but the warehouse write failed: "
                             f"{saved.warehouse_error}"))


def _finish(st, session: LiveSession, config: Config) -> None:
    """Save an ended session (once) and remember it for display."""
    if not session.stats().frames:
        return
    with st.spinner("Saving the session…"):
        try:
            st.session_state[_LAST] = save_session(session, config)
        except ValueError as exc:
            st.warning("Nothing saved: " + md_escape(exc))


def _new_session(config: Config) -> LiveSession:
    return LiveSession(config)


def render(config: Config | None = None) -> None:
    """Draw the Live page (the body of dashboard/pages/6_Live.py)."""
    import streamlit as st
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    config = config or load_config()
    st.header("Live analysis")
    info = _model_header(st, config)
    if info is None:
        return

    session: LiveSession | None = st.session_state.get(_SESSION)
    if session is not None and session.stopped:  # the stream ended between runs (its on-ended hook saved it)
        _finish(st, session, config)
        session = None
    if session is None:
        session = _new_session(config)
        st.session_state[_SESSION] = session
    current = session  # the callbacks below capture this session; it must be the one to receive frames

    async def on_frames(frames):  # WebRTC thread: buffer only
        current.push_frames(frames)
        return frames

    ctx = webrtc_streamer(
        key=WEBRTC_KEY,
        mode=WebRtcMode.SENDONLY,
        rtc_configuration=rtc_configuration(config),
        media_stream_constraints=MEDIA_CONSTRAINTS,
        queued_audio_frames_callback=on_frames,
        on_audio_ended=lambda: save_in_background(current, config),
        async_processing=True,
    )
    playing = bool(ctx.state.playing)
    if playing:
        session.start()
        st.session_state[_SEEN_PLAYING] = session.id
    elif (session.stats().frames > 0 and not ctx.state.signalling
          and st.session_state.get(_SEEN_PLAYING) == session.id):
        # Stop was pressed: save (once) and get ready for the next Start. Only a session a run saw playing
        # counts: during Start's handshake frames can arrive before the component reports "playing", and
        # a stream that ends before any run saw it is saved by its on-ended hook.
        _finish(st, session, config)
        st.session_state[_SESSION] = _new_session(config)

    last: SavedSession | None = st.session_state.get(_LAST)

    @st.fragment(run_every=REFRESH_S if playing else None)
    def live_panel() -> None:
        if playing:
            _draw_results(st, current, current.results(), trained=info.emotion_trained, playing=True,
                          key="live")
        elif last is not None:
            _saved_message(st, last)
            _draw_results(st, None, _results_of(last.result), trained=info.emotion_trained, playing=False,
                          key="live")
        else:
            st.info("Press START and allow the microphone. Results appear after each pause in speech.")

    live_panel()

    st.divider()
    _fallback(st, config, info)


def _results_of(result: FileResult) -> list[LiveResult]:
    """A saved session's chunks as one LiveResult (for drawing with the same code)."""
    from pipeline.stream import Utterance

    import numpy as np

    utt = Utterance(index=0, start_s=0.0, end_s=result.duration_s, samples=np.zeros(0, dtype=np.float32),
                    reason="stop", speech_s=result.duration_s)
    return [LiveResult(utterance=utt, result=result, closed_at=0.0, done_at=0.0)]


def _fallback(st, config: Config, info) -> None:
    st.subheader("No connection? Record a clip instead")
    st.caption("If the live connection cannot be made (a firewall, no TURN server), record here: the clip is "
               "analysed the same way (end-pointed into utterances) and saved like a live session.")
    clip = st.audio_input("Record", sample_rate=48000, key="live_fallback_clip")
    if clip is None:
        return
    data = clip.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    done: dict[str, SavedSession] = st.session_state.setdefault(_FALLBACK_DONE, {})
    if digest not in done:
        from pipeline import decode_bytes

        try:
            audio = decode_bytes(data, "microphone clip")
        except Exception as exc:  # AudioError names the reason
            st.error("The recording cannot be read: " + md_escape(exc))
            return
        with st.spinner("Analysing the recording…"):
            session = analyse_recording(audio.samples, audio.sample_rate, config)
            try:
                done[digest] = save_session(session, config)
            except ValueError as exc:
                st.warning("Nothing saved: " + md_escape(exc))
                return
    saved = done[digest]
    _saved_message(st, saved)
    _draw_results(st, None, _results_of(saved.result), trained=info.emotion_trained, playing=False,
                  key="fallback")
