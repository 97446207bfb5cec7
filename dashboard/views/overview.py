"""Overview: corpus figures, emotion mix, emotions over time, by folder, by file and by speaker within a file,
with filters."""

from __future__ import annotations

import datetime as _dt

import streamlit as st

from dashboard import charts, data, report
from dashboard.views import common, exports
from pipeline import BASE_EMOTIONS
from warehouse.filters import Filters, time_grain
from warehouse.queries_overview import Figures

#: Folders / files drawn in the "by folder" and "by file" charts, and files listed in the table.
TOP_GROUPS = 20
TABLE_FILES = 200


def sidebar_filters(db: str) -> Filters:
    """The sidebar filters (they apply to every chart and export of the page)."""
    opts = data.filter_options(db)
    sb = st.sidebar
    sb.header("Filters")
    folders = sb.multiselect("Folder", opts.folders, key="f_folders", placeholder="all folders")
    date_from = date_to = None
    if opts.date_min and opts.date_max:
        picked = sb.date_input("Recorded between (UTC)", value=(opts.date_min, opts.date_max),
                           min_value=opts.date_min, max_value=opts.date_max, key="f_dates")
        if isinstance(picked, (tuple, list)):
            if len(picked) >= 1:
                date_from = picked[0]
            if len(picked) == 2:
                date_to = picked[1]
        elif isinstance(picked, _dt.date):
            date_from = picked
        if date_from == opts.date_min:
            date_from = None
        if date_to == opts.date_max:
            date_to = None
    languages = sb.multiselect("Language", opts.languages, key="f_languages", placeholder="all languages")
    models = sb.multiselect("Emotion model", opts.models, key="f_models", placeholder="all models")
    emotions = sb.multiselect("Dominant emotion", list(BASE_EMOTIONS), key="f_emotions", placeholder="all emotions")
    min_conf = sb.slider("Minimum confidence (dominant probability)", 0.0, 1.0, 0.0, 0.05, key="f_conf")
    untrained = sb.checkbox("Include untrained models (scores are not emotions)", key="f_untrained",
                            help="Random-weight models are stored so the pipeline can be tested; their outputs are "
                                 "not emotions and are left out unless ticked.")
    return Filters(tuple(folders), date_from, date_to, tuple(languages), tuple(models), tuple(emotions),
                        float(min_conf), bool(untrained))


def render() -> None:
    common.ensure_app_navigation()
    cfg = common.config()
    db = common.db_path(cfg)
    st.title("Overview")
    st.caption("Database: " + common.md_escape(db))
    with common.guard():
        status = data.status(db)
        if common.empty_state(db, status):
            return
        filters = sidebar_filters(db)
        fig = data.figures(db, filters)

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Files", f"{fig.files:,}")
    c2.metric("Audio hours", f"{fig.audio_hours:,.2f}", help=f"of which speech (chunks): {fig.speech_hours:,.2f} h")
    c3.metric("Chunks", f"{fig.chunks:,}")
    c4.metric("Failed files", f"{fig.failed_files:,}",
              help=f"{fig.skipped_files:,} more skipped (not audio, hidden); see the Runs page")

    if not filters.include_untrained and status.untrained_files:
        if status.trained_files == 0:
            st.warning(f"All {status.untrained_files:,} analysed files come from untrained (random-weight) models, "
                       f"whose scores are not emotions, so the charts leave them out. Tick **Include untrained "
                       f"models** in the sidebar to inspect the pipeline's output anyway.")
        else:
            st.caption(f"{status.untrained_files:,} file(s) from untrained models are left out (their scores are "
                       f"not emotions).")
    elif filters.include_untrained and status.untrained_files:
        st.warning("Untrained models included: their scores are model outputs, not emotions.")
    with common.guard():
        models = data.selection_models(db, filters)
    common.caveats(models)

    if fig.chunks == 0:
        st.info("No chunks match these filters." if status.ok_files else
                "No analysed speech yet: every stored file failed, was skipped or held no speech.")
        _exports(db, filters, fig)
        return
    trained = not filters.include_untrained or status.untrained_files == 0

    with common.guard():
        mix = data.emotion_mix(db, filters)
        opts = data.filter_options(db)
        grain = time_grain(filters.date_from or opts.date_min, filters.date_to or opts.date_max)
        over = data.over_time(db, filters, grain)
        folders = data.by_group(db, filters, "folder", top=TOP_GROUPS)
        files = data.by_group(db, filters, "file", top=TOP_GROUPS)
        n_folders = data.group_count(db, filters, "folder")
        n_files = data.group_count(db, filters, "file")
        speakers = data.speaker_mix(db, filters, top=TOP_GROUPS)
        n_speaker_files = data.speaker_file_count(db, filters)
        table = data.files_table(db, filters, limit=TABLE_FILES)
        n_table = data.selection_file_count(db, filters)
        basis = data.time_basis(db, filters)

    left, right = st.columns(2)
    left.altair_chart(charts.emotion_mix(mix, trained=trained), width="stretch")
    right.altair_chart(charts.mean_scores(mix, trained=trained), width="stretch")
    if len(over):
        st.altair_chart(charts.over_time(over, grain, trained=trained, time_title=basis.axis_title),
                        width="stretch")
        if basis.recorded < basis.files:
            st.caption(f"{basis.files - basis.recorded:,} of {basis.files:,} files have no recording time (none "
                       "in their metadata or name): they are placed at the time they were ingested.")
    tab_folder, tab_file, tab_speaker = st.tabs(["By folder", "By file", "By speaker"])
    with tab_folder:
        if len(folders):
            named = folders.assign(full=folders["group"], group=charts.short_folders(folders["group"]))
            st.altair_chart(charts.by_group(named, "folder", trained=trained), width="stretch")
            _top_note(named["group_id"].nunique(), n_folders, "folders")
        else:
            st.info("No chunk with a dominant emotion in this selection.")
    with tab_file:
        if len(files):
            named = files.assign(full=files["group"], group=charts.short_folders(files["group"]))
            st.altair_chart(charts.by_group(named, "file", trained=trained), width="stretch")
            _top_note(named["group_id"].nunique(), n_files, "files")
        else:
            st.info("No chunk with a dominant emotion in this selection.")
    with tab_speaker:
        _speaker_tab(speakers, n_speaker_files, trained)

    st.subheader("Files")
    st.caption(f"Select a row to open the file. Newest first: {len(table):,} of {n_table:,} files"
               + (f" (the newest {TABLE_FILES:,} are listed)." if n_table > len(table) else "."))
    shown = table.drop(columns=["ingested_at"], errors="ignore")
    event = st.dataframe(
        shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
        key="ov_files",
        column_config={
            "file_id": st.column_config.NumberColumn("id", format="%d"),
            "duration_s": st.column_config.NumberColumn("duration (s)", format="%.1f"),
            "emotion_trained": st.column_config.CheckboxColumn("trained"),
            "chunks": st.column_config.NumberColumn("chunks (selected)"),
        })
    rows = getattr(getattr(event, "selection", None), "rows", None) or []
    if rows:
        _open_file(int(shown.iloc[rows[0]]["file_id"]))
    pick_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
    ids = [int(x) for x in shown["file_id"]]
    paths = dict(zip(ids, shown["path"]))
    target = pick_col.selectbox("Open a file", ids, format_func=lambda i: f"{paths[i]}  (#{i})", key="ov_open")
    if button_col.button("Open file", key="ov_open_btn", width="stretch") and target is not None:
        _open_file(int(target))

    _exports(db, filters, fig)


def _speaker_tab(speakers, n_files: int, trained: bool) -> None:
    """The emotion mix of each speaker within each file that has several (labels are per file, never pooled)."""
    if speakers.empty:
        st.info("No file in this selection has more than one speaker label (speaker labels are per file; files "
                "with one voice, or analysed without speaker labelling, are not drawn here).")
        return
    st.altair_chart(charts.speaker_mix(speakers, trained=trained), width="stretch")
    _top_note(speakers["file_id"].nunique(), n_files, "files with several speakers")
    st.caption("Rows are file · speaker. Speaker labels are per file: S1 of one file is not S1 of another, so no "
               "row pools a label across files. Chunks without a speaker label are left out.")


def _top_note(shown: int, total: int, what: str) -> None:
    """Say when a chart shows only the top groups of more."""
    if total > shown:
        st.caption(f"Showing the {shown:,} {what} with the most chunks, of {total:,} in this selection.")
    else:
        st.caption(f"All {total:,} {what} of this selection.")


def _open_file(file_id: int) -> None:
    common.set_file(file_id)
    st.switch_page(common.PAGES["file"], query_params={"file": str(file_id)})


def _exports(db: str, filters: Filters, fig: Figures) -> None:
    from dashboard import auth

    if not auth.may_export():  # downloads are for analysts (dashboard/auth.py, SECURITY.md)
        return
    st.subheader("Export this selection")
    st.caption("The filtered chunks (at most 100,000 rows) as CSV or JSON, or a PDF report with the charts. "
               + common.md_escape("; ".join(filters.describe())))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M")
    token = (filters, data.version(db))
    none = fig.chunks == 0
    exports.offer_all([
        exports.Export("CSV", lambda: report.selection_csv(db, filters), f"emotivoice-selection-{stamp}.csv",
                       "text/csv", "ov_csv", "The CSV export of this selection", disabled=none),
        exports.Export("JSON", lambda: report.selection_json(db, filters), f"emotivoice-selection-{stamp}.json",
                       "application/json", "ov_json", "The JSON export of this selection", disabled=none),
        exports.Export("PDF report", lambda: report.selection_pdf(db, filters), f"emotivoice-selection-{stamp}.pdf",
                       "application/pdf", "ov_pdf", "The PDF report of this selection"),
    ], token)
