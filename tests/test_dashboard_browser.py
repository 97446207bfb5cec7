"""End to end in Debian's chromium: ``emotivoice dashboard`` on a filled warehouse, every page visited.

The server is started the way users start it (``python -m flows.cli dashboard --db ... --port ...`` on
127.0.0.1) on a copy of ``filled_warehouse``, with the tiny random HuBERT as the configured model and
the filled warehouse's corpus as the only corpus root. The browser opens every page, ticks "include
untrained", opens a file, plays a chunk, runs a SQL query and downloads its CSV, starts an ingestion of a
new folder and waits for it to finish. A screenshot of each page goes to ``artifacts/`` (git-ignored).
``st.dataframe`` draws on a canvas, so table contents are checked in tests/test_dashboard.py instead.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures_warehouse_data import CONVERSATION_NAME, copy_warehouse

from tests.browser_util import CHROMIUM, free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--autoplay-policy=no-user-gesture-required"]
NEW_CLIP = ("Actor_05", "03-01-02-01-01-01-05.flac")

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboard(filled_warehouse, ravdess_dir, tmp_path):
    """(base URL, database path, corpus, server log) of a running ``emotivoice dashboard``."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    corpus = tmp_path / "corpus"
    shutil.copytree(filled_warehouse.corpus, corpus)
    db = copy_warehouse(filled_warehouse.db, tmp_path)
    import warehouse  # the copied corpus holds the analysed files at new paths: point the rows there

    with warehouse.connection.write_connection(db) as con:
        con.execute("UPDATE files SET path = replace(path, ?, ?), folder = replace(folder, ?, ?)",
                    [str(filled_warehouse.corpus), str(corpus)] * 2)
    (corpus / NEW_CLIP[0]).mkdir()
    shutil.copy2(ravdess_dir / NEW_CLIP[0] / NEW_CLIP[1], corpus / NEW_CLIP[0] / NEW_CLIP[1])
    base, proc, log = serve(db, tmp_path, filled_warehouse.config.emotion_model, corpus)
    try:
        yield base, db, corpus, log
    finally:
        stop(proc)  # the CLI and the streamlit server it started


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1800}, accept_downloads=True)
        pg = context.new_page()
        pg.set_default_timeout(180_000)  # generous: the machine may be busy with other work
        yield pg
        browser.close()


def settle(page) -> None:
    """Wait until the script run finished (Streamlit shows a status widget while it runs)."""
    time.sleep(0.5)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')")
    time.sleep(1.0)


def heading(page, text: str) -> None:
    page.get_by_role("heading", name=text, exact=True).first.wait_for()
    settle(page)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)


def go(page, link: str, title: str | None = None) -> None:
    """Follow the sidebar link ``link`` and wait for the page's heading (default: the link's text)."""
    page.get_by_role("link", name=link, exact=True).first.click()
    heading(page, title or link)


def chunk_shown(page) -> str:
    """The chunk the File page's panel shows ("Chunk 2")."""
    return page.locator("strong", has_text=re.compile(r"^Chunk \d+$")).first.inner_text()


def test_every_page_works_in_chromium(dashboard, page):
    base, db, corpus, log = dashboard
    try:
        visit_every_page(page, base, db, corpus)
    except BaseException:  # leave what the browser saw and what the server said
        shot(page, "failure")
        print(f"page at failure: {page.url}\n--- dashboard log (tail) ---\n{log.read_text()[-4000:]}")
        raise


def visit_every_page(page, base: str, db: Path, corpus: Path) -> None:
    import warehouse

    # Overview: untrained results are left out until asked for, then every chart draws.
    page.goto(base + "/")
    heading(page, "Overview")
    assert page.get_by_text("come from untrained (random-weight) models").is_visible()
    page.get_by_role("checkbox", name="Include untrained models").check(force=True)
    settle(page)
    page.wait_for_function("() => document.querySelectorAll('.vega-embed').length >= 4")
    shot(page, "overview")

    # Open the newest file (the joined conversation) from the Overview.
    page.get_by_role("button", name="Open file").click()
    heading(page, "File")
    assert page.get_by_text(CONVERSATION_NAME).first.is_visible()
    assert page.get_by_text("Not emotions.", exact=True).first.is_visible()
    page.wait_for_selector("audio")
    page.wait_for_function("() => document.querySelectorAll('.vega-embed').length >= 2")
    chunk = warehouse.read_df(
        "SELECT c.start_s, c.end_s FROM chunks c JOIN files f USING (file_id) WHERE f.path LIKE ? ORDER BY c.idx "
        "LIMIT 1", [f"%{CONVERSATION_NAME}"], db=db).iloc[0]
    audio = page.locator("audio").first
    audio.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('audio').readyState >= 1 && "
                           "isFinite(document.querySelector('audio').duration)")
    duration = audio.evaluate("a => a.duration")
    assert abs(duration - (chunk.end_s - chunk.start_s)) < 0.05  # the player holds exactly that chunk
    audio.evaluate("a => a.play()")
    page.wait_for_function("() => document.querySelector('audio').currentTime > 0.3 || "
                           "document.querySelector('audio').ended", timeout=60_000)
    shot(page, "file")

    # A click on a chunk's band in the timeline picks that chunk and plays it.
    before = chunk_shown(page)
    box = page.locator(".vega-embed").first.bounding_box()
    for frac in (0.5, 0.65, 0.35, 0.8, 0.2):
        page.mouse.click(box["x"] + box["width"] * frac, box["y"] + box["height"] * 0.55)
        settle(page)
        if chunk_shown(page) != before:
            break
    assert chunk_shown(page) != before, "no click on the timeline picked another chunk"
    assert page.locator("audio").first.evaluate("a => a.autoplay")

    # Explain: the chunk's SHAP bars, then its LIME weights and attention maps.
    go(page, "Explain")
    assert page.get_by_text("Explained label").is_visible()
    page.wait_for_function("() => document.querySelectorAll('.vega-embed').length >= 1")
    shot(page, "explain")
    page.get_by_role("tab", name="Attention").click()
    settle(page)
    assert page.get_by_text("rollout (all layers)").is_visible()
    shot(page, "explain-attention")

    # SQL: a query typed in (a text area commits on Control+Enter), run, and its CSV downloaded.
    go(page, "SQL")
    editor = page.get_by_role("textbox", name="Query")
    editor.fill("SELECT path, n_chunks FROM files WHERE status = 'ok' ORDER BY path")
    editor.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    settle(page)
    page.get_by_text("row(s) in").wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    expected = warehouse.read_df("SELECT path, n_chunks FROM files WHERE status = 'ok' ORDER BY path", db=db)
    assert [r["path"] for r in rows] == expected["path"].tolist()
    assert [int(r["n_chunks"]) for r in rows] == expected["n_chunks"].tolist()
    shot(page, "sql")
    editor.fill("DROP TABLE files")
    editor.press("Control+Enter")
    settle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    settle(page)
    assert page.get_by_text("only read queries are allowed").is_visible()
    assert not page.get_by_text("Traceback").count()

    # Runs: start an ingestion of the new folder and wait until it has finished.
    go(page, "Runs")
    assert page.get_by_text("Failed and skipped files").is_visible()
    page.get_by_label("Folder to ingest").click()
    page.get_by_role("option", name=str((corpus / NEW_CLIP[0]).resolve()), exact=True).click()
    settle(page)
    page.get_by_role("button", name="Start ingestion").click()
    page.get_by_text("started (log:").wait_for()
    page.get_by_text(f"Ingestion of {NEW_CLIP[0]} finished").first.wait_for(timeout=420_000)
    settle(page)
    shot(page, "runs")
    done = warehouse.read_df("SELECT r.status, f.path, f.status AS file_status FROM runs r JOIN files f USING (run_id) "
                             "WHERE r.run_id = (SELECT max(run_id) FROM runs)", db=db)
    assert done["status"].tolist() == ["completed"] and done["path"].str.endswith(NEW_CLIP[1]).all()
    assert done["file_status"].tolist() == ["ok"]

    # Live: mounted as the last page.
    go(page, "Live", "Live analysis")
    page.get_by_text("Loading models…").wait_for(state="hidden", timeout=300_000)
    settle(page)
    shot(page, "live")


# ----------------------------------------------------------------------------- a default ingest, by the sidebar
def serve(db: Path, tmp_path: Path, emotion_model: str, corpus: Path):
    """Start ``emotivoice dashboard`` on ``db``; returns (base URL, process, log)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "EMOTIVOICE_EMOTION_MODEL": emotion_model, "EMOTIVOICE_WHISPER_MODEL": "none",
           "EMOTIVOICE_DEVICE": "cpu", "EMOTIVOICE_CORPUS_ROOTS": str(corpus),
           "EMOTIVOICE_DATA_DIR": str(tmp_path / "data"), "EMOTIVOICE_ICE_SERVERS": ""}
    for key in ("EMOTIVOICE_CONFIG", "EMOTIVOICE_DB"):
        env.pop(key, None)
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "dashboard", "--db", str(db), "--port", str(port)],
                                cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_healthy(port, proc, log)
    return f"http://127.0.0.1:{port}", proc, log


def stop(proc) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_a_default_ingest_through_the_sidebar_in_chromium(ravdess_dir, tiny_hubert_dir, tmp_path, page):
    """What a user gets after a plain ``emotivoice ingest`` (most chunks without a faithfulness check):
    every page reached from the sidebar draws, the caveats are on them, the PDF export downloads."""
    import warehouse

    from tests.test_dashboard import default_ingest

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
    db, corpus = default_ingest(ravdess_dir, tiny_hubert_dir, tmp_path / "ingest")
    assert warehouse.read_df("SELECT count(*) AS n FROM explanations WHERE faithfulness IS NULL", db=db)["n"][0] > 0
    base, proc, log = serve(db, tmp_path, str(tiny_hubert_dir), corpus)
    try:
        sidebar_tour(page, base, db)
    except BaseException:
        shot(page, "default-failure")
        print(f"page at failure: {page.url}\n--- dashboard log (tail) ---\n{log.read_text()[-4000:]}")
        raise
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text()


def sidebar_tour(page, base: str, db: Path) -> None:
    import warehouse
    from playwright.sync_api import expect

    page.goto(base + "/")
    heading(page, "Overview")
    assert page.get_by_text("Intended use:").first.is_visible()

    go(page, "File")  # the newest file
    newest = warehouse.read_df("SELECT path FROM files WHERE status = 'ok' ORDER BY ingested_at DESC, file_id DESC "
                               "LIMIT 1", db=db)["path"][0]
    assert page.get_by_text(Path(newest).name, exact=True).first.is_visible()
    assert page.get_by_text("Intended use:").first.is_visible()
    page.wait_for_function("() => document.querySelectorAll('.vega-embed').length >= 3")
    page.get_by_role("button", name="Make PDF report").click()
    settle(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download PDF report").click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF")
    with page.expect_download() as download:
        page.get_by_role("button", name="JSON", exact=True).click()
    assert b'"faithfulness": null' in Path(download.value.path()).read_bytes()
    shot(page, "default-file")

    go(page, "Explain")  # crashed here before: every chunk without a faithfulness check
    assert page.get_by_text("Explained label").is_visible()
    assert page.get_by_text("not measured").first.is_visible()
    assert page.get_by_text("Intended use:").first.is_visible()
    assert not page.get_by_text("TypeError").count()
    page.get_by_role("tab", name="Faithfulness").click()
    settle(page)
    assert page.get_by_text("No faithfulness check was stored for this chunk").is_visible()
    shot(page, "default-explain")

    # Deep links use lower-case paths; a stale id says so.
    fid = int(warehouse.read_df("SELECT min(file_id) AS f FROM files", db=db)["f"][0])
    page.goto(base + f"/file?file={fid}")
    heading(page, "File")
    assert page.get_by_text(str(warehouse.read_df("SELECT path FROM files WHERE file_id = ?", [fid],
                                                  db=db)["path"][0])).first.is_visible()
    page.goto(base + "/explain?file=999999")
    heading(page, "Explain")
    assert page.get_by_text("File #999999 from the link is not in this warehouse").is_visible()

    go(page, "Live", "Live analysis")
    page.get_by_text("Models ready").first.wait_for(timeout=300_000)
    # the header under the status box is drawn after it, in the same run: wait for it, don't race it
    expect(page.get_by_text("Whisper is off: the configuration sets whisper_model")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Intended use:").first).to_be_visible(timeout=60_000)
    assert page.url.rstrip("/").endswith("/live")
    shot(page, "default-live")
