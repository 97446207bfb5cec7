"""Runs: ingestion runs, failed files with their reasons, and starting an ingestion of an allowed folder."""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from dashboard import actions, data
from dashboard.views import common

logger = logging.getLogger(__name__)

POLL_S = 1.0


def render() -> None:
    common.ensure_app_navigation()
    cfg = common.config()
    db = common.db_path(cfg)
    st.title("Runs")
    st.caption("Database: " + common.md_escape(db))
    _start_section(cfg, db)
    _jobs_section(db)

    with common.guard():
        status = data.status(db)
        if not status.exists or status.empty:
            common.empty_state(db, status)
            return
        runs = data.runs(db)
        reasons = data.failures(db)
        failed = data.failed_files(db)
    st.subheader("Ingestion runs")
    if len(runs):
        st.dataframe(runs, hide_index=True, width="stretch", key="runs_table",
                     column_config={"seconds": st.column_config.NumberColumn("seconds", format="%.1f")})
    else:
        st.info("No runs recorded yet.")
    st.subheader("Failed and skipped files")
    if len(failed):
        st.caption(f"{status.failed_files:,} failed (retried when the file changes, or with `emotivoice ingest --retry-failed`; "
                   f"unreadable ones on every run) · {status.skipped_files:,} skipped "
                   f"(not audio, hidden; not retried while unchanged)")
        st.dataframe(reasons, hide_index=True, width="stretch", key="runs_reasons")
        st.dataframe(failed, hide_index=True, width="stretch", key="runs_failed")
    else:
        st.success("No failed or skipped files.")


def _start_section(cfg, db: str) -> None:
    st.subheader("Start an ingestion")
    roots = actions.allowed_roots(cfg)
    if not roots:
        st.warning("No corpus root exists: set `corpus_roots` in the configuration to folders the dashboard may "
                   "ingest.")
        return
    st.caption("Folders under the configured corpus roots only"
               + ("" if cfg.corpus_roots else " (none configured: the bundled examples/ folder)")
               + "; symbolic links are not followed out of them:")
    st.code("\n".join(str(r) for r in roots), language=None)
    choices = [str(p) for p in actions.folder_choices(cfg)]
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    folder = left.selectbox("Folder to ingest", choices, key="runs_folder")
    typed = left.text_input("…or type a folder path under a corpus root", key="runs_path",
                            placeholder=f"e.g. {roots[0]}/calls/2024",
                            help="Checked on the server: the folder must exist and lie inside a corpus root once "
                                 "symbolic links are resolved.").strip()
    if right.button("Start ingestion", type="primary", key="runs_start", width="stretch"):
        target = typed or folder
        if not target:
            st.error("Pick or type a folder to ingest.")
            return
        try:
            job = actions.start_ingestion(cfg, target, db)  # validates the folder again, server-side
        except (ValueError, RuntimeError, OSError) as exc:
            logger.warning("ingestion of %r refused: %s", target, exc)
            st.error(common.md_escape(exc))
        else:
            st.success(common.md_escape(f"Ingestion of {job.folder} started (log: {job.log_path})."))


def _jobs_section(db: str) -> None:
    jobs = actions.jobs(db)
    if not jobs:
        return
    running = any(j.state().running for j in jobs)

    @st.fragment(run_every=POLL_S if running else None)
    def progress() -> None:
        any_running = False
        for job in jobs[:5]:
            state = job.state()
            any_running |= state.running
            name = Path(job.folder).name or str(job.folder)
            if state.running:
                frac = state.fraction
                text = (f"Ingesting {common.md_escape(name)}: {state.done_files}/{state.total_files} files"
                        if frac is not None
                        else f"Ingesting {common.md_escape(name)}: starting (discovering files, loading models)…")
                st.progress(frac or 0.0, text=text)
                if st.button("Stop", key=f"stop_{job.job_id}"):
                    job.stop()
            elif state.ok:
                st.progress(1.0, text=f"Ingestion of {common.md_escape(name)} finished")
            else:
                st.error(common.md_escape(f"Ingestion of {name} ended with exit code {state.returncode}; "
                                          f"log: {job.log_path}"))
            if state.last_lines:
                with st.expander(f"Output of {common.md_escape(name)}", expanded=not state.running):
                    st.code("\n".join(state.last_lines[-8:]), language=None)
        if running and not any_running:
            data.clear_caches()
            st.rerun()  # the run finished: refresh the tables below

    progress()
