"""Exports from the dashboard: one file's results, or the Overview's filtered selection, as JSON, CSV
or a PDF report with the charts.

PDF pictures come from ``pipeline.plots`` (emotion distribution, SHAP bars, LIME over the waveform,
attention heatmaps) and from small matplotlib charts drawn here (chunk timeline, emotion mix, over
time, by folder); reportlab lays them out. Reports of untrained (random-weight) models say on the
first page, in red, that the scores are not emotions; absent classes are written "absent".
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

from dashboard import data
from pipeline import BASE_EMOTIONS, SAMPLE_RATE
from warehouse.filters import Filters, time_grain
from warehouse.rows import missing, stored_explanation

logger = logging.getLogger(__name__)

#: Chunks listed in a file report's table, and chunks whose explanations are drawn.
MAX_TABLE_CHUNKS = 200
MAX_EXPLAINED_CHUNKS = 5
#: Rows at most in a selection's CSV / JSON export.
SELECTION_LIMIT = 100_000
UNTRAINED_WARNING = ("These results come from an untrained (random-weight) emotion model: the scores are model "
                     "outputs, not emotions.")
_FONT = "EVSans"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, _dt.datetime, _dt.date)):
        return value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    return value


# --------------------------------------------------------------------------------------------------
# JSON / CSV
# --------------------------------------------------------------------------------------------------

def file_json(db: str, file_id: int) -> bytes:
    """One file's results as JSON (file row, chunks with every emotion; null = absent class)."""
    payload = data.file_export_dict(db, file_id)
    if payload is None:
        raise LookupError(f"file {file_id} is not in {db}")
    return json.dumps(_jsonable(payload), indent=2, ensure_ascii=False).encode("utf-8")


def file_csv(db: str, file_id: int) -> bytes:
    """One row per chunk: times, dominant, the six base probabilities (empty = absent), granular,
    complex, transcript; with the file's path, model and trained flag."""
    info = data.file_info(db, file_id)
    if info is None:
        raise LookupError(f"file {file_id} is not in {db}")
    chunks = data.file_chunks(db, file_id).drop(columns=["tiers"], errors="ignore")
    chunks.insert(0, "path", info["path"])
    chunks.insert(1, "emotion_model", info.get("emotion_model"))
    chunks.insert(2, "emotion_trained", bool(info.get("emotion_trained")))
    return chunks.to_csv(index=False).encode("utf-8")


def selection_csv(db: str, filters: Filters, *, limit: int = SELECTION_LIMIT) -> bytes:
    """The filtered chunks (at most ``limit``), one row each; empty base cells = absent classes."""
    return data.selection_rows(db, filters, limit=limit).to_csv(index=False).encode("utf-8")


def selection_json(db: str, filters: Filters, *, limit: int = SELECTION_LIMIT) -> bytes:
    """The filtered chunks as JSON: the filters, the figures, the emotion mix and the chunk rows."""
    rows = data.selection_rows(db, filters, limit=limit)
    fig = data.figures(db, filters)
    payload = {
        "database": db,
        "exported_at_utc": _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat(),
        "filters": filters.describe(),
        "figures": fig.__dict__,
        "emotion_mix": data.emotion_mix(db, filters).to_dict(orient="records"),
        "truncated": len(rows) >= limit,
        "chunks": rows.to_dict(orient="records"),
    }
    if filters.include_untrained and data.status(db).untrained_files > 0:
        payload["warning"] = "includes untrained (random-weight) models: their scores are not emotions"
    return json.dumps(_jsonable(payload), indent=1, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# matplotlib charts drawn here
# --------------------------------------------------------------------------------------------------

def _fig(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _colour(label: Any) -> str:
    from dashboard.charts import EMOTION_COLOURS

    return EMOTION_COLOURS.get(str(label), "#bbbbbb")


def timeline_png(chunks: pd.DataFrame, duration_s: float, samples: np.ndarray | None = None, *,
                 trained: bool = True) -> bytes:
    """The file's chunks as bars coloured by dominant emotion, over the waveform when available."""
    fig = _fig(7.0, 2.2 if samples is not None else 1.3)
    ax = fig.add_subplot()
    if samples is not None and len(samples):
        from dashboard.charts import envelope

        env = envelope(samples, SAMPLE_RATE, points=2000)
        ax.fill_between(env["t"], env["lo"], env["hi"], color="#34495e", lw=0)
    for r in chunks.itertuples():
        ax.axvspan(r.start_s, r.end_s, color=_colour(r.dominant), alpha=0.35, lw=0)
    ax.set_xlim(0, max(duration_s, float(chunks["end_s"].max()) if len(chunks) else 0.0) or 1.0)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    labels = [e for e in BASE_EMOTIONS if e in set(chunks["dominant"].dropna())]
    if labels:
        from matplotlib.patches import Patch

        ax.legend([Patch(color=_colour(e), alpha=0.6) for e in labels], labels, fontsize=7, ncols=len(labels),
                  loc="upper center", bbox_to_anchor=(0.5, -0.35 if samples is not None else -0.6), frameon=False)
    ax.set_title("Chunk timeline (dominant emotion)" if trained else
                 "Chunk timeline (top class of an untrained model: not emotions)", fontsize=9)
    return _png(fig)


def mix_png(mix: pd.DataFrame, *, trained: bool = True) -> bytes:
    fig = _fig(6.4, 2.6)
    ax = fig.add_subplot()
    ax.barh(mix["label"][::-1], mix["share"].fillna(0)[::-1] * 100, color=[_colour(x) for x in mix["label"][::-1]])
    ax.set_xlabel("% of chunks")
    ax.set_title("Dominant emotion per chunk" if trained else
                 "Top class per chunk (includes untrained models: not emotions)", fontsize=9)
    return _png(fig)


def over_time_png(df: pd.DataFrame, grain: str, *, trained: bool = True) -> bytes:
    fig = _fig(7.0, 2.8)
    ax = fig.add_subplot()
    table = df.pivot_table(index="period", columns="label", values="chunks", aggfunc="sum", fill_value=0)
    shares = table.div(table.sum(axis=1), axis=0)
    bottom = np.zeros(len(shares))
    x = np.arange(len(shares))
    for label in [e for e in BASE_EMOTIONS if e in shares.columns]:
        ax.bar(x, shares[label].to_numpy(), bottom=bottom, color=_colour(label), label=label)
        bottom += shares[label].to_numpy()
    step = max(1, len(x) // 12)
    ax.set_xticks(x[::step], [pd.Timestamp(p).strftime("%Y-%m-%d %H:%M" if grain == "hour" else "%Y-%m-%d")
                              for p in shares.index[::step]], rotation=30, fontsize=7, ha="right")
    ax.set_ylabel("share of chunks")
    ax.set_title(f"Emotions over time (per {grain}, UTC)" + ("" if trained else " — includes untrained models: "
                                                               "not emotions"), fontsize=9)
    ax.legend(fontsize=7, ncols=6, loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    return _png(fig)


def by_group_png(df: pd.DataFrame, title: str) -> bytes:
    table = df.pivot_table(index="group", columns="label", values="chunks", aggfunc="sum", fill_value=0)
    table = table.loc[table.sum(axis=1).sort_values().index]
    shares = table.div(table.sum(axis=1), axis=0)
    fig = _fig(7.0, 0.8 + 0.28 * len(shares))
    ax = fig.add_subplot()
    left = np.zeros(len(shares))
    from dashboard.charts import short_folders

    names = [n[-48:] for n in short_folders(shares.index)]
    for label in [e for e in BASE_EMOTIONS if e in shares.columns]:
        ax.barh(names, shares[label].to_numpy(), left=left, color=_colour(label), label=label)
        left += shares[label].to_numpy()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("share of chunks")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=6, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.2 / (2 + len(shares))),
              frameon=False)
    return _png(fig)


# --------------------------------------------------------------------------------------------------
# PDF layout
# --------------------------------------------------------------------------------------------------

def _register_font() -> str:
    """A TrueType font with wide Unicode coverage (transcripts in any language); Helvetica otherwise."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if _FONT in pdfmetrics.getRegisteredFontNames():
        return _FONT
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        pdfmetrics.registerFont(TTFont(_FONT, str(ttf)))
        return _FONT
    except Exception as exc:  # pragma: no cover - matplotlib always ships DejaVu
        logger.info("DejaVuSans unavailable for PDFs (%s); using Helvetica", exc)
        return "Helvetica"


class _Doc:
    """A list of reportlab flowables with the few styles the reports use."""

    def __init__(self, title: str, subject: str = ""):
        from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

        font = _register_font()
        base = getSampleStyleSheet()
        self.title = title
        self.subject = subject
        self.styles = {
            "h1": ParagraphStyle("h1", parent=base["Heading1"], fontName=font, fontSize=16),
            "h2": ParagraphStyle("h2", parent=base["Heading2"], fontName=font, fontSize=12),
            "p": ParagraphStyle("p", parent=base["BodyText"], fontName=font, fontSize=9, leading=12),
            "small": ParagraphStyle("small", parent=base["BodyText"], fontName=font, fontSize=7.5, leading=9.5),
            "warn": ParagraphStyle("warn", parent=base["BodyText"], fontName=font, fontSize=10, leading=13,
                                   textColor="#b03a2e"),
        }
        self.font = font
        self.items: list = []
        self.plain: list[str] = []
        """Every paragraph's text, in order (what the report says, for tests and logs)."""

    def text(self, text: str, style: str = "p") -> None:
        from reportlab.platypus import Paragraph

        self.plain.append(text)
        self.items.append(Paragraph(escape(text), self.styles[style]))

    def space(self, h: float = 6) -> None:
        from reportlab.platypus import Spacer

        self.items.append(Spacer(1, h))

    def image(self, png: bytes, max_width: float = 480.0) -> None:
        from reportlab.lib.utils import ImageReader
        from reportlab.platypus import Image

        w, h = ImageReader(io.BytesIO(png)).getSize()
        scale = min(1.0, max_width / float(w)) if w else 1.0
        self.items.append(Image(io.BytesIO(png), width=w * scale, height=h * scale))

    def table(self, rows: list[list[Any]], widths: list[float] | None = None) -> None:
        from reportlab.lib import colors
        from reportlab.platypus import Paragraph, Table, TableStyle

        cells = [[Paragraph(escape("" if v is None else str(v)), self.styles["small"]) for v in row] for row in rows]
        t = Table(cells, colWidths=widths, repeatRows=1)
        t.setStyle(TableStyle([
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eaecee")),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#aab7b8")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ]))
        self.items.append(t)

    def build(self) -> bytes:
        from reportlab.lib.pagesizes import A4
        from reportlab.platypus import SimpleDocTemplate

        buf = io.BytesIO()
        font = self.font

        def footer(canvas, doc) -> None:
            canvas.saveState()
            canvas.setFont(font, 7)
            canvas.drawString(40, 20, f"EmotiVoice — {self.title} — page {doc.page}")
            canvas.restoreState()

        doc = SimpleDocTemplate(buf, pagesize=A4, title=self.title, author="EmotiVoice", subject=self.subject,
                                leftMargin=40, rightMargin=40, topMargin=40, bottomMargin=40)
        doc.build(self.items, onFirstPage=footer, onLaterPages=footer)
        return buf.getvalue()


def _fmt(v: Any, digits: int = 2) -> str:
    if missing(v):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _caveats(doc: _Doc, models: list[tuple[str | None, bool]]) -> None:
    """The emotion model caveat(s) and the intended-use notice, as on the pages (``dashboard.caveats``)."""
    from dashboard.caveats import INTENDED_USE, model_caveats

    for text in model_caveats(models):
        doc.text(text)
    doc.text(INTENDED_USE, "small")
    doc.space()


def file_report(db: str, file_id: int) -> _Doc:
    """The PDF report of one file: models, warnings, chunk timeline, emotion distribution, chunk table
    and, for its first explained chunks, SHAP bars, LIME over the waveform and attention maps."""
    from dashboard.media import AudioUnavailable, chunk_samples, load_audio
    from pipeline import plots

    info = data.file_info(db, file_id)
    if info is None:
        raise LookupError(f"file {file_id} is not in {db}")
    trained = bool(info.get("emotion_trained"))
    chunks = data.file_chunks(db, file_id)
    absent = list(info.get("absent_labels") or [])
    doc = _Doc(f"report of {Path(str(info['path'])).name}", "" if trained else UNTRAINED_WARNING)
    doc.text(f"EmotiVoice report: {Path(str(info['path'])).name}", "h1")
    doc.text(f"Path: {info['path']}")
    doc.text(f"Duration: {_fmt(info.get('duration_s'))} s · chunks: {len(chunks)} · emotion model: "
             f"{info.get('emotion_model')} · Whisper: {info.get('whisper_model') or 'off'} · ingested "
             f"{_fmt(info.get('ingested_at'))} · report made {_now()}")
    if not trained:
        doc.text(UNTRAINED_WARNING, "warn")
    _caveats(doc, [(info.get("emotion_model"), trained)])
    if absent:
        doc.text("Classes this model does not have (shown as 'absent', not 0): " + ", ".join(absent))
    for note in info.get("notes") or []:
        doc.text(f"Note: {note}")
    doc.space()

    audio = load_audio(str(info["path"]))
    samples = None if isinstance(audio, AudioUnavailable) else audio.samples
    if isinstance(audio, AudioUnavailable):
        doc.text(f"Audio not available ({audio.reason}): timeline without waveform.", "small")
    if len(chunks):
        doc.image(timeline_png(chunks, float(info.get("duration_s") or 0.0), samples, trained=trained))
        means = {e: (None if e in absent or chunks[e].isna().all() else float(chunks[e].mean()))
                 for e in BASE_EMOTIONS}
        doc.image(plots.plot_emotion_distribution(means, trained=trained,
                                                  title="Mean probability over the file's chunks"))
        doc.text("Chunks", "h2")
        head = ["#", "start s", "end s", "dominant", *BASE_EMOTIONS, "granular / complex", "transcript"]
        rows = [head]
        for r in chunks.head(MAX_TABLE_CHUNKS).itertuples():
            base = ["absent" if e in absent else _fmt(getattr(r, e)) for e in BASE_EMOTIONS]
            extra = "; ".join(x for x in (r.granular, r.complex) if isinstance(x, str))
            rows.append([r.idx, _fmt(r.start_s), _fmt(r.end_s), _fmt(r.dominant), *base, extra, _fmt(r.transcript)])
        doc.table(rows, widths=[18, 32, 32, 46] + [34] * 6 + [70, 95])
        if len(chunks) > MAX_TABLE_CHUNKS:
            doc.text(f"First {MAX_TABLE_CHUNKS} of {len(chunks)} chunks; the CSV export has them all.", "small")
    else:
        doc.text("No speech chunks were found in this file.")

    explained = chunks[chunks["tiers"].notna()].head(MAX_EXPLAINED_CHUNKS) if len(chunks) else chunks
    for r in explained.itertuples():
        stored = data.chunk_explanation(db, int(r.chunk_id))
        exp = stored_explanation(stored) if stored is not None else None
        if exp is None:
            continue
        doc.text(f"Chunk {r.idx} ({_fmt(r.start_s)}–{_fmt(r.end_s)} s): explanation of p({exp.target_label}), "
                 f"{exp.tier} tier", "h2")
        if not trained:
            doc.text("Explains an untrained model's output (not an emotion).", "small")
        doc.image(plots.plot_shap_segments(exp))
        if samples is not None:
            doc.image(plots.plot_lime_waveform(chunk_samples(samples, r.start_s, r.end_s), exp))
        if exp.shap_features:
            doc.image(plots.plot_shap_features(exp))
        doc.image(plots.plot_attention(exp), max_width=420)
        if exp.faithfulness:
            doc.text("Faithfulness (deletion AOPC): " + ", ".join(f"{k} {v:.3f}" for k, v in exp.faithfulness.items()),
                     "small")
    if len(chunks) > len(explained) and len(explained):
        doc.text(f"Explanations drawn for the first {len(explained)} explained chunks; the dashboard's Explain page "
                 f"shows any chunk.", "small")
    return doc


def file_pdf(db: str, file_id: int) -> bytes:
    """``file_report`` as PDF bytes."""
    return file_report(db, file_id).build()


def selection_report(db: str, filters: Filters) -> _Doc:
    """The PDF report of the Overview's selection: filters, figures, emotion mix and distribution, over
    time, by folder and the newest files."""
    from pipeline import plots

    fig = data.figures(db, filters)
    mix = data.emotion_mix(db, filters)
    opts = data.filter_options(db)
    trained_only = not (filters.include_untrained and data.status(db).untrained_files > 0)
    doc = _Doc("corpus report", "" if trained_only else "includes untrained models: scores are not emotions")
    doc.text("EmotiVoice corpus report", "h1")
    doc.text(f"Database: {db} · report made {_now()}")
    doc.text("Selection: " + "; ".join(filters.describe()))
    if not trained_only:
        doc.text("This selection includes untrained (random-weight) models: their scores are not emotions.", "warn")
    _caveats(doc, data.selection_models(db, filters))
    doc.table([["files", "audio hours", "speech hours", "chunks", "failed files", "skipped files"],
               [fig.files, f"{fig.audio_hours:.2f}", f"{fig.speech_hours:.2f}", fig.chunks, fig.failed_files,
                fig.skipped_files]])
    doc.space(10)
    if fig.chunks == 0:
        doc.text("No chunks match this selection.")
        return doc
    doc.image(mix_png(mix, trained=trained_only))
    means = {r.label: (None if pd.isna(r.mean_score) else float(r.mean_score)) for r in mix.itertuples()}
    doc.image(plots.plot_emotion_distribution(means, trained=trained_only,
                                              title="Mean probability per emotion (selection)"))
    date_from = filters.date_from or opts.date_min
    date_to = filters.date_to or opts.date_max
    grain = time_grain(date_from, date_to)
    ot = data.over_time(db, filters, grain)
    if len(ot):
        doc.image(over_time_png(ot, grain, trained=trained_only))
    folders = data.by_group(db, filters, "folder", top=20)
    if len(folders):
        doc.image(by_group_png(folders, "Emotion mix by folder (top 20 by chunks)"))
    files = data.files_table(db, filters, limit=50)
    if len(files):
        doc.text("Newest files of the selection", "h2")
        rows = [["file", "duration s", "chunks", "top emotion", "model", "trained"]]
        rows += [[r.path, _fmt(r.duration_s, 1), r.chunks, _fmt(r.top_emotion), r.emotion_model,
                  "yes" if r.emotion_trained else "NO (not emotions)"] for r in files.itertuples()]
        doc.table(rows, widths=[210, 45, 40, 60, 90, 70])
    return doc


def selection_pdf(db: str, filters: Filters) -> bytes:
    """``selection_report`` as PDF bytes."""
    return selection_report(db, filters).build()


__all__ = ["file_csv", "file_json", "file_pdf", "file_report", "selection_csv", "selection_json", "selection_pdf",
           "selection_report"]
