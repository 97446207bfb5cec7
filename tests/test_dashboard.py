"""The dashboard, page by page, through Streamlit's AppTest (in-process, no browser).

Every page runs on an empty database and on ``filled_warehouse`` (RAVDESS clips really analysed by the
tiny random-weight models, so every file is flagged untrained). Charts are read from their Vega-Lite
specs and datasets, tables from ``at.dataframe[i].value``.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tests.fixtures_warehouse_data import CONVERSATION_NAME, FAILED_REASON, copy_warehouse
from warehouse.filters import Filters

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
PAGES = {
    "overview": None, "file": "pages/2_File.py", "explain": "pages/3_Explain.py", "sql": "pages/4_SQL.py",
    "runs": "pages/5_Runs.py", "live": "pages/6_Live.py",
}


# ----------------------------------------------------------------------------- a default ingest
#: Clips of the default-ingest warehouse (actor folder, clip), plus the joined conversation of actor 04.
DEFAULT_CLIPS = (("Actor_05", "03-01-02-01-01-01-05.flac"), ("Actor_06", "03-01-05-01-01-01-06.flac"))


def default_ingest(ravdess_dir: Path, emotion_model: Path, root: Path) -> tuple[Path, Path]:
    """``emotivoice ingest`` with every setting at its default but the models (the tiny random HuBERT, no
    Whisper: no network here): the warehouse a user gets, where most chunks have no faithfulness check
    (``faithfulness_sample`` 0.002). Returns (database, corpus)."""
    import os
    import shutil
    import subprocess

    from tests.fixtures_warehouse_data import write_conversation

    corpus = root / "corpus"
    for actor, name in DEFAULT_CLIPS:
        (corpus / actor).mkdir(parents=True, exist_ok=True)
        shutil.copy2(ravdess_dir / actor / name, corpus / actor / name)
    write_conversation(ravdess_dir, corpus / "Actor_04" / CONVERSATION_NAME)
    db = root / "default.duckdb"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMOTIVOICE_")}
    env.update(EMOTIVOICE_EMOTION_MODEL=str(emotion_model), EMOTIVOICE_WHISPER_MODEL="none",
               EMOTIVOICE_DEVICE="cpu", EMOTIVOICE_DATA_DIR=str(root / "data"), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(corpus), "--db", str(db)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return db, corpus


@pytest.fixture(scope="session")
def default_warehouse(tmp_path_factory, ravdess_dir, tiny_hubert_dir) -> Path:
    """A warehouse written by a real default ``emotivoice ingest`` of three files (one of several chunks)."""
    import warehouse

    db, _ = default_ingest(ravdess_dir, tiny_hubert_dir, tmp_path_factory.mktemp("default_ingest"))
    checked = warehouse.read_df("SELECT count(*) FILTER (WHERE faithfulness IS NULL) AS unchecked, count(*) AS n "
                                "FROM explanations", db=db).iloc[0]
    assert checked["n"] >= 4 and checked["unchecked"] >= 1, checked  # what this fixture is for
    return db


# ----------------------------------------------------------------------------- helpers
def make_app(monkeypatch, db, **env):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EMOTIVOICE_DB", str(db))
    monkeypatch.delenv("EMOTIVOICE_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(f"EMOTIVOICE_{key.upper()}", str(value))
    return AppTest.from_file(str(APP), default_timeout=180)


def open_page(at, page: str, **query):
    if PAGES[page] is not None and not getattr(at, "_ev_ran", False):
        at.run()  # st.navigation registers the pages' URL paths (/file, /explain...) before a switch can find them
    at._ev_ran = True
    for key, value in query.items():
        at.query_params[key] = str(value)
    if PAGES[page] is None:
        at.run()
    else:
        at.switch_page(PAGES[page]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> list[dict]:
    """Each chart's spec with its datasets as DataFrames under '_data'."""
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        spec["_data"] = {d.name: pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in el.proto.datasets}
        out.append(spec)
    return out


def title_of(spec: dict) -> str:
    t = spec.get("title")
    if isinstance(t, dict):
        return " ".join([str(t.get("text", ""))] + [str(s) for s in t.get("subtitle", []) or []])
    return str(t or "")


def chart(at, title_part: str) -> dict:
    found = [c for c in charts(at) if title_part in title_of(c)]
    assert found, f"no chart titled like {title_part!r} in {[title_of(c) for c in charts(at)]}"
    return found[0]


def chart_data(spec: dict) -> pd.DataFrame:
    return pd.concat(list(spec["_data"].values()), ignore_index=True) if spec["_data"] else pd.DataFrame()


def texts(at, kind: str) -> list[str]:
    return [str(e.value) for e in at.get(kind)]


def shown(at, kind: str) -> list[str]:
    """The text of each element of ``kind`` as the reader sees it: Markdown backslash escapes resolved."""
    return [re.sub(r"\\(.)", r"\1", t) for t in texts(at, kind)]


def metric(at, label: str) -> str:
    for m in at.metric:
        if m.label == label:
            return str(m.value)
    raise AssertionError(f"no metric {label!r} in {[m.label for m in at.metric]}")


def files_of(db) -> pd.DataFrame:
    import warehouse

    return warehouse.read_df(
        "SELECT file_id, path, folder, status, n_chunks, absent_labels FROM files ORDER BY file_id", db=db)


def file_id(db, name: str) -> int:
    df = files_of(db)
    return int(df[df["path"].str.endswith(name)]["file_id"].iloc[0])


# ----------------------------------------------------------------------------- empty database
@pytest.mark.parametrize("page", ["overview", "file", "explain", "runs"])
def test_every_page_on_an_empty_database_points_to_emotivoice_ingest(monkeypatch, empty_warehouse, page):
    at = open_page(make_app(monkeypatch, empty_warehouse), page)
    assert any("emotivoice ingest" in t for t in texts(at, "info")), texts(at, "info")


def test_sql_page_on_an_empty_database_runs_queries(monkeypatch, empty_warehouse):
    at = open_page(make_app(monkeypatch, empty_warehouse), "sql")
    at.text_area(key="sql_text").set_value("SELECT count(*) AS files FROM files")
    at.button(key="sql_run").click().run()
    assert not at.error
    assert at.dataframe[0].value["files"].tolist() == [0]


def test_a_missing_database_is_not_created_by_looking_at_it(monkeypatch, tmp_path):
    db = tmp_path / "nowhere.duckdb"
    at = open_page(make_app(monkeypatch, db), "overview")
    assert any("No database yet" in t for t in texts(at, "info"))
    assert not db.exists()


# ----------------------------------------------------------------------------- overview
def test_overview_leaves_untrained_results_out_and_says_why(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    assert any("untrained" in t and "not emotions" in t for t in texts(at, "warning"))
    assert not charts(at)
    assert metric(at, "Chunks") == "0"


def test_overview_with_untrained_included_shows_figures_and_every_chart(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    at.checkbox(key="f_untrained").check().run()
    ok = files_of(filled_warehouse.db).query("status == 'ok'")
    assert metric(at, "Files") == str(len(ok))
    assert metric(at, "Chunks") == str(int(ok["n_chunks"].sum()))
    assert metric(at, "Failed files") == "1"
    for title in ("Emotion mix (dominant", "Mean probability", "Emotions over time", "Emotion mix by folder",
                  "Emotion mix by file"):
        assert "not emotions" in title_of(chart(at, title))
    mix = chart_data(chart(at, "Emotion mix (dominant"))
    assert mix["dominant_chunks"].sum() == ok["n_chunks"].sum()
    assert sorted(at.dataframe[0].value["path"]) == sorted(ok["path"])


def test_overview_mean_probabilities_mark_classes_no_model_has_as_absent(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    at.checkbox(key="f_untrained").check().run()
    superb = filled_warehouse.models["superb"]
    at.multiselect(key="f_models").select(superb).run()
    scores = chart_data(chart(at, "Mean probability")).set_index("label")
    assert scores.loc["fear", "text"] == "absent" and scores.loc["surprise", "text"] == "absent"
    assert scores.loc["neutral", "text"] != "absent"


def test_overview_filters_apply_to_every_chart_and_the_file_table(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    at.checkbox(key="f_untrained").check().run()
    folder = str(filled_warehouse.corpus / "Actor_01")
    at.multiselect(key="f_folders").select(folder).run()
    ok = files_of(filled_warehouse.db).query("status == 'ok' and folder == @folder")
    assert metric(at, "Files") == str(len(ok))
    assert set(chart_data(chart(at, "by folder"))["full"]) == {folder}
    assert chart_data(chart(at, "Emotion mix (dominant"))["dominant_chunks"].sum() == ok["n_chunks"].sum()
    assert set(at.dataframe[0].value["folder"]) == {folder}


def test_overview_minimum_confidence_keeps_only_confident_chunks(monkeypatch, filled_warehouse):
    import warehouse

    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    at.checkbox(key="f_untrained").check().run()
    at.slider(key="f_conf").set_value(0.3).run()
    expected = warehouse.read_df("SELECT count(*) AS n FROM chunks WHERE dominant_score >= 0.3",
                                 db=filled_warehouse.db)["n"].iloc[0]
    assert metric(at, "Chunks") == str(int(expected))


def test_overview_open_file_goes_to_that_files_page(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    at.checkbox(key="f_untrained").check().run()
    target = file_id(filled_warehouse.db, CONVERSATION_NAME)
    at.selectbox(key="ov_open").select(target).run()
    at.button(key="ov_open_btn").click().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["File"]
    assert shown(at, "subheader")[0] == CONVERSATION_NAME


def test_overview_shows_trained_results_without_any_warning_and_refreshes_when_the_warehouse_changes(
        monkeypatch, filled_warehouse, tmp_path):
    import warehouse
    from dashboard import data
    from warehouse.synth import fake_file_result

    db = copy_warehouse(filled_warehouse.db, tmp_path)
    at = open_page(make_app(monkeypatch, db), "overview")
    assert metric(at, "Files") == "0"
    store = warehouse.Warehouse(db)
    store.write_result("/recordings/calls/a.wav", "a" * 64, fake_file_result(1, "/recordings/calls/a.wav",
                                                                              n_chunks=5, trained=True))
    time.sleep(data.VERSION_TTL_S + 0.2)  # the warehouse version is re-read at most this often
    at.run()
    assert metric(at, "Files") == "1" and metric(at, "Chunks") == "5"
    assert "not emotions" not in title_of(chart(at, "Emotion mix (dominant"))
    assert not any("not emotions" in t for t in texts(at, "warning"))


def test_overview_keeps_working_while_an_ingestion_writes(monkeypatch, filled_warehouse, tmp_path):
    import threading

    import warehouse
    from dashboard import data
    from warehouse.synth import fake_file_result

    db = copy_warehouse(filled_warehouse.db, tmp_path)
    stop, written, failures = threading.Event(), [], []

    def writer() -> None:  # what the flow does: one short transaction per file
        store = warehouse.Warehouse(db)
        try:
            for i in range(200):
                if stop.is_set():
                    return
                path = f"/recordings/busy/{i}.wav"
                store.write_result(path, f"{i:064x}", fake_file_result(i, path, n_chunks=10, trained=True))
                written.append(i)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    at = make_app(monkeypatch, db)
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for _ in range(5):
            data.clear_caches()  # every run reads the database again, while the writer writes
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            assert not at.error, texts(at, "error")
    finally:
        stop.set()
        thread.join(60)
    assert written and not failures


# ----------------------------------------------------------------------------- file
def test_file_page_warns_that_an_untrained_models_scores_are_not_emotions(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "file",
                   file=file_id(filled_warehouse.db, CONVERSATION_NAME))
    assert any("Not emotions" in t and "untrained" in t for t in texts(at, "warning"))


def test_file_page_timeline_has_every_chunk_coloured_by_its_dominant_emotion(monkeypatch, filled_warehouse):
    from dashboard import data

    db = filled_warehouse.db
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db), "file", file=fid)
    spec = chart(at, "Waveform and chunk timeline")
    stored = data.file_chunks(str(db), fid)
    rects = [d for d in spec["_data"].values() if "label" in d.columns][0]
    assert rects["label"].tolist() == stored["dominant"].tolist()
    assert rects["start_s"].tolist() == stored["start_s"].tolist()
    waves = [d for d in spec["_data"].values() if "hi" in d.columns]
    assert waves and len(waves[0]) > 100  # the decoded waveform is drawn under the chunks


def test_file_page_lists_each_chunk_with_its_six_probabilities_and_transcript(monkeypatch, filled_warehouse):
    from pipeline.types import BASE_EMOTIONS

    db = filled_warehouse.db
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db), "file", file=fid)
    table = at.dataframe[0].value
    assert len(table) == files_of(db).set_index("file_id").loc[fid, "n_chunks"]
    for e in BASE_EMOTIONS:
        assert all(0.0 <= float(v) <= 1.0 for v in table[e])
    assert {"granular", "complex", "transcript"} <= set(table.columns)


def test_file_page_shows_classes_the_model_lacks_as_absent_not_zero(monkeypatch, filled_warehouse):
    db = filled_warehouse.db
    at = open_page(make_app(monkeypatch, db), "file", file=file_id(db, "03-01-01-01-01-01-03.flac"))
    table = at.dataframe[0].value
    assert set(table["fear"]) == {"absent"} and set(table["surprise"]) == {"absent"}
    assert all(v != "absent" for v in table["neutral"])
    assert any("fear, surprise" in t and "absent" in t for t in texts(at, "info"))
    probs = chart_data(chart(at, "Base probabilities")).set_index("label")
    assert probs.loc["fear", "text"] == "absent"


def test_file_page_has_a_player_for_the_chosen_chunk_and_names_the_models(monkeypatch, filled_warehouse):
    db = filled_warehouse.db
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db), "file", file=fid)
    assert len(at.get("audio")) == 1
    chunk_box = at.selectbox(key="file_chunk")
    assert len(chunk_box.options) == len(at.dataframe[0].value)
    chunk_box.select_index(2).run()
    assert any(m.value.startswith("**Chunk 2**") for m in at.markdown)
    assert len(at.get("audio")) == 1
    assert any(filled_warehouse.models["seed"] in t for t in shown(at, "caption"))


def test_file_page_shows_the_transcript_of_a_transcribed_chunk(monkeypatch, filled_warehouse):
    db = filled_warehouse.db
    at = open_page(make_app(monkeypatch, db), "file", file=file_id(db, "03-01-05-02-01-01-01.flac"))
    assert any(m.value.startswith("**Transcript**") for m in at.markdown)
    assert (at.dataframe[0].value["language"] != "").all()


# ----------------------------------------------------------------------------- explain
def test_explain_page_shows_shap_lime_attention_features_and_faithfulness(monkeypatch, filled_warehouse):
    import warehouse

    db = filled_warehouse.db
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db), "explain", file=fid)
    for title in ("SHAP over time segments", "LIME segment weights", "layer 1", "rollout",
                  "Acoustic features against the corpus"):
        chart(at, title)
    chunk_id = int(at.selectbox(key="explain_chunk").value)
    stored = warehouse.read_df(
        "SELECT faithfulness['aopc_top'] AS a, target_label FROM explanations WHERE chunk_id = ?",
        [chunk_id], db=db).iloc[0]
    assert metric(at, "Faithfulness (AOPC top-k)") == f"{stored['a']:.3f}"
    assert metric(at, "Explained label") == stored["target_label"]
    shap = chart_data(chart(at, "SHAP over time segments"))
    seg = warehouse.read_df("SELECT value FROM shap WHERE chunk_id = ? AND kind = 'segment' ORDER BY segment",
                            [chunk_id], db=db)
    assert shap["value"].round(9).tolist() == seg["value"].round(9).tolist()


def test_explain_page_summarises_every_faithfulness_check_in_the_warehouse_per_model(monkeypatch, filled_warehouse):
    import warehouse
    from pipeline.faithfulness import faithfulness_summary

    db = filled_warehouse.db
    at = open_page(make_app(monkeypatch, db), "explain", file=file_id(db, CONVERSATION_NAME))
    table = next(d.value for d in at.dataframe if "chunks checked" in d.value.columns)
    stored = warehouse.read_df("""
        SELECT f.emotion_model, e.tier, map_keys(e.faithfulness) AS k, map_values(e.faithfulness) AS v
        FROM explanations e JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
        WHERE e.faithfulness IS NOT NULL AND f.status = 'ok'""", db=db)
    assert len(stored) > 0 and set(table["emotion model"]) == set(stored["emotion_model"])
    for row in table.itertuples(index=False):
        mine = stored[(stored["emotion_model"] == row[0]) & (stored["tier"] == row[1])]
        want = faithfulness_summary([dict(zip(k, v)) for k, v in zip(mine["k"], mine["v"])])
        assert row[2] == want.chunks == len(mine)
        assert row[3] == pytest.approx(want.top_is_most_harmful_rate)
        assert row[4] == pytest.approx(want.chance_rate)


def test_explain_page_says_when_a_model_has_no_attention(monkeypatch, tmp_path):
    import warehouse
    from warehouse.synth import fake_file_result

    db = tmp_path / "noatt.duckdb"
    result = fake_file_result(3, "/recordings/b.wav", n_chunks=2, attention=False)
    for ch in result.chunks:
        ch.explanation.attention_note = "emotion model compact has no attention (not a transformer): no attention maps"
    warehouse.Warehouse(db).write_result("/recordings/b.wav", "b" * 64, result)
    at = open_page(make_app(monkeypatch, db), "explain")
    assert any(t.startswith("This model has no attention") for t in texts(at, "info"))


def test_explain_full_tier_button_replaces_the_stored_explanation(monkeypatch, filled_warehouse, tmp_path):
    import warehouse

    db = copy_warehouse(filled_warehouse.db, tmp_path)
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db, explain_budget=32, device="cpu"), "explain", file=fid)
    chunk_id = int(at.selectbox(key="explain_chunk").value)
    assert metric(at, "Tier") == "fast"
    at.button(key="explain_full").click().run()
    assert not at.error, texts(at, "error")
    assert metric(at, "Tier") == "full"
    assert any("full tier" in t for t in texts(at, "success"))
    rows = warehouse.read_df("SELECT tier, faithfulness FROM explanations WHERE chunk_id = ?", [chunk_id], db=db)
    assert rows["tier"].tolist() == ["full"] and rows["faithfulness"].notna().all()


def test_replacing_a_chunks_explanation_keeps_its_feature_attributions_for_the_same_label(filled_warehouse, tmp_path):
    import warehouse
    from pipeline.types import Explanation, SegmentWeight
    from warehouse.updates import replace_chunk_explanation

    db = copy_warehouse(filled_warehouse.db, tmp_path)
    chunk_id = 1
    target = warehouse.read_df("SELECT target_label FROM explanations WHERE chunk_id = ?", [chunk_id],
                               db=db)["target_label"].iloc[0]
    with warehouse.connection.write_connection(db) as con:  # give the chunk an acoustic attribution to keep
        con.execute("INSERT INTO shap (chunk_id, target_label, feature, value, method, kind) VALUES "
                    "(?, ?, 'pitch_mean_hz', 0.01, 'surrogate', 'acoustic')", [chunk_id, target])
    new = Explanation(target_label=target, tier="full", shap_method="KernelSHAP",
                      shap_segments=[SegmentWeight(0, 0.0, 0.5, 0.1), SegmentWeight(1, 0.5, 1.0, -0.02)],
                      shap_base_value=0.2, shap_full_value=0.28, lime_method="LIME", lime_segments=[], lime_score=None)
    done = replace_chunk_explanation(chunk_id, new, db=db)
    shap = warehouse.read_df("SELECT kind, feature, value FROM shap WHERE chunk_id = ? ORDER BY kind, feature",
                             [chunk_id], db=db)
    assert done.kept_feature_attributions == 1
    assert shap["kind"].tolist() == ["acoustic", "segment", "segment"]
    assert warehouse.read_df("SELECT count(*) AS n FROM attention WHERE chunk_id = ?", [chunk_id], db=db)["n"][0] == 0


# ----------------------------------------------------------------------------- a default ingest: no faithfulness
@pytest.fixture
def downloads(monkeypatch):
    """What the download buttons of the next runs hold: ``get(at, key) -> bytes`` (the bytes a click gets)."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from streamlit.testing.v1 import app_test

    stores: list[MemoryMediaFileStorage] = []

    class Recording(MemoryMediaFileStorage):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            stores.append(self)

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Recording)

    def get(at, key: str) -> bytes:
        button = next(b for b in at.get("download_button") if b.key == key)
        assert not button.proto.disabled, f"{key} is disabled"
        name = button.proto.url.rsplit("/", 1)[-1]
        return stores[-1].get_file(name).content

    return get


def test_explain_page_shows_every_chunk_of_a_default_ingest_and_says_faithfulness_was_not_measured(
        monkeypatch, default_warehouse):
    import warehouse

    db = default_warehouse
    rows = warehouse.read_df("""
        SELECT c.file_id, c.chunk_id, e.target_label, e.faithfulness IS NULL AS unchecked
        FROM chunks c JOIN explanations e USING (chunk_id) ORDER BY c.file_id, c.idx""", db=db)
    assert rows["unchecked"].any() and rows["file_id"].nunique() == 3
    for fid, chunks in rows.groupby("file_id"):
        at = open_page(make_app(monkeypatch, db), "explain", file=fid)  # a link to the file, as from File
        for r in chunks.itertuples():
            at.selectbox(key="explain_chunk").select(r.chunk_id).run()
            assert not at.exception, [e.value for e in at.exception]
            _explained_chunk_is_drawn(at, r)


def _explained_chunk_is_drawn(at, r) -> None:
    assert int(at.selectbox(key="explain_chunk").value) == r.chunk_id
    assert metric(at, "Explained label") == r.target_label
    chart(at, "SHAP over time segments")
    if r.unchecked:
        assert metric(at, "Faithfulness") == "not measured"
        assert any(t.startswith("No faithfulness check was stored for this chunk") for t in texts(at, "info"))


def test_file_page_of_a_default_ingest_shows_its_chunks_and_every_export_downloads(
        monkeypatch, default_warehouse, downloads):
    import warehouse

    db = default_warehouse
    fid = file_id(db, CONVERSATION_NAME)
    n = int(files_of(db).set_index("file_id").loc[fid, "n_chunks"])
    at = open_page(make_app(monkeypatch, db), "file", file=fid)
    assert len(at.dataframe[0].value) == n > 1
    assert not at.error, texts(at, "error")
    payload = json.loads(downloads(at, "file_json"))
    assert len(payload["chunks"]) == n
    assert [e["faithfulness"] for c in payload["chunks"] for e in c["explanations"]] == warehouse.read_df(
        "SELECT faithfulness FROM explanations JOIN chunks USING (chunk_id) WHERE file_id = ? ORDER BY idx",
        [fid], db=db)["faithfulness"].map(lambda v: None if v is None or v is pd.NA else dict(v)).tolist()
    assert len(pd.read_csv(pd.io.common.BytesIO(downloads(at, "file_csv")))) == n
    assert not [b for b in at.get("download_button") if b.key == "file_pdf"]  # made on demand
    at.button(key="file_pdf_make").click().run()
    assert not at.error, texts(at, "error")
    pdf = downloads(at, "file_pdf")
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Subtype /Image") >= 2


def test_a_failed_export_says_which_export_failed_and_why(monkeypatch, default_warehouse):
    from dashboard import report

    def broken(db, file_id):
        raise OSError("No space left on device")

    monkeypatch.setattr(report, "file_pdf", broken)
    monkeypatch.setattr(report, "file_json", broken)
    db = default_warehouse
    at = open_page(make_app(monkeypatch, db), "file", file=file_id(db, CONVERSATION_NAME))
    assert shown(at, "error") == [f"The JSON export of {CONVERSATION_NAME} could not be made: No space left on device"]
    at.button(key="file_pdf_make").click().run()
    assert not at.exception
    assert shown(at, "error")[-1] == f"The PDF report of {CONVERSATION_NAME} could not be made: No space left on device"
    assert not [b for b in at.get("download_button") if b.key == "file_pdf"]
    assert at.button(key="file_pdf_make")  # the page carries on: the button is there to try again


# ----------------------------------------------------------------------------- SQL
def test_sql_page_runs_an_example_query_and_offers_csv_and_parquet(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "sql")
    at.selectbox(key="sql_example").select("Failures by reason").run()
    at.button(key="sql_run").click().run()
    result = at.dataframe[0].value
    assert result["reason"].tolist() == [FAILED_REASON]
    labels = [b.label for b in at.get("download_button")]
    assert "Download CSV" in labels and "Download Parquet" in labels


@pytest.mark.parametrize("sql, message", [
    ("SELEC 1", "Parser Error"),
    ("SELECT nope FROM files", "Binder Error"),
    ("DELETE FROM files", "only read queries are allowed"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
])
def test_sql_errors_show_duckdbs_message_and_no_traceback(monkeypatch, filled_warehouse, sql, message):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "sql")
    at.text_area(key="sql_text").set_value(sql)
    at.button(key="sql_run").click().run()
    assert not at.exception
    assert any(message in t for t in texts(at, "error")), texts(at, "error")
    assert not at.dataframe


# ----------------------------------------------------------------------------- runs
def test_runs_page_lists_runs_and_failed_files_with_their_reasons(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "runs")
    tables = [d.value for d in at.dataframe]
    runs = next(t for t in tables if "run_id" in t.columns and "status" in t.columns and "started_at" in t.columns)
    assert runs["run_id"].tolist() == [filled_warehouse.run_id] and runs["status"].tolist() == ["completed"]
    failed = next(t for t in tables if "path" in t.columns)
    assert failed["path"].tolist() == [str(filled_warehouse.failed)]
    assert failed["reason"].tolist() == [FAILED_REASON]


def test_runs_page_offers_only_folders_under_the_corpus_roots(monkeypatch, filled_warehouse):
    corpus = filled_warehouse.corpus
    at = open_page(make_app(monkeypatch, filled_warehouse.db, corpus_roots=corpus), "runs")
    options = at.selectbox(key="runs_folder").options
    assert options[0] == str(corpus.resolve())
    assert all(Path(o).resolve().is_relative_to(corpus.resolve()) for o in options)
    assert str((corpus / "Actor_01").resolve()) in options


def test_runs_page_without_corpus_roots_offers_only_the_examples_folder(monkeypatch, empty_warehouse):
    at = open_page(make_app(monkeypatch, empty_warehouse), "runs")
    options = at.selectbox(key="runs_folder").options
    assert all(Path(o).is_relative_to(ROOT / "examples") for o in options) and options


def test_ingestion_refuses_folders_outside_the_corpus_roots(tmp_path):
    from dashboard.actions import resolve_ingest_folder
    from pipeline.config import Config

    root = tmp_path / "corpus"
    (root / "calls").mkdir(parents=True)
    outside = tmp_path / "private"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    cfg = Config().replace(corpus_roots=(str(root),))
    assert resolve_ingest_folder(cfg, root / "calls") == (root / "calls").resolve()
    for bad in (outside, root / "calls" / ".." / ".." / "private", root / "escape", Path("/etc")):
        with pytest.raises(ValueError, match="outside the corpus roots"):
            resolve_ingest_folder(cfg, bad)
    with pytest.raises(ValueError, match="absolute"):
        resolve_ingest_folder(cfg, "corpus/calls")


def test_runs_page_starts_an_ingestion_and_shows_its_progress(monkeypatch, empty_warehouse, tmp_path):
    from dashboard import actions

    script = tmp_path / "fake_ingest.py"
    script.write_text("import sys, time\n"
                      "sys.stdout.write('ingest:  50%|#####     | 1/2 [00:01<00:01]\\r'); sys.stdout.flush()\n"
                      "time.sleep(60)\n")
    started: list[tuple] = []

    def fake_command(folder, db):
        started.append((folder, db))
        return [sys.executable, str(script)]

    monkeypatch.setattr(actions, "ingest_command", fake_command)
    corpus = tmp_path / "corpus"
    (corpus / "calls").mkdir(parents=True)
    at = open_page(make_app(monkeypatch, empty_warehouse, corpus_roots=corpus, data_dir=tmp_path / "data"), "runs")
    at.selectbox(key="runs_folder").select(str((corpus / "calls").resolve())).run()
    at.button(key="runs_start").click().run()
    try:
        assert started == [((corpus / "calls").resolve(), str(empty_warehouse))]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            at.run()
            bars = at.get("progress")
            if bars and "1/2 files" in bars[0].proto.text:
                break
            time.sleep(0.5)
        assert bars and "1/2 files" in bars[0].proto.text
        assert bars[0].proto.value == 50
    finally:
        for job in actions.jobs():
            job.stop()
            job.process.wait(10)


def test_a_second_ingestion_of_the_same_folder_is_refused_while_one_runs(monkeypatch, tmp_path):
    from dashboard import actions
    from pipeline.config import Config

    monkeypatch.setattr(actions, "ingest_command",
                        lambda folder, db: [sys.executable, "-c", "import time; time.sleep(60)"])
    root = tmp_path / "corpus"
    root.mkdir()
    cfg = Config().replace(corpus_roots=(str(root),), data_dir=str(tmp_path / "data"))
    job = actions.start_ingestion(cfg, root, str(tmp_path / "x.duckdb"))
    try:
        with pytest.raises(RuntimeError, match="already running"):
            actions.start_ingestion(cfg, root, str(tmp_path / "x.duckdb"))
    finally:
        job.stop()
        job.process.wait(10)


# ----------------------------------------------------------------------------- live
def test_live_page_is_mounted(monkeypatch, empty_warehouse, tmp_path):
    at = open_page(make_app(monkeypatch, empty_warehouse, emotion_model=tmp_path / "no-model",
                            whisper_model="none"), "live")
    assert any("Live" in h.value for h in at.header)


def test_live_page_saves_a_session_only_when_a_stream_it_saw_playing_stops(monkeypatch, tmp_path, tiny_hubert_dir,
                                                                           three_utterances_wav):
    """Frames may reach the server during Start's handshake, before the component says "playing": a run
    then must not take the session for stopped and save a fragment of it (it did once in the browser test:
    a 1.2 s session saved, the rest of the stream lost)."""
    import types

    import soundfile as sf
    import streamlit_webrtc

    state = types.SimpleNamespace(playing=False, signalling=True)
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", lambda **kw: types.SimpleNamespace(state=state))
    at = open_page(make_app(monkeypatch, tmp_path / "live.duckdb", emotion_model=tiny_hubert_dir,
                            whisper_model="none", explain="fast", data_dir=tmp_path / "data"), "live")
    session = at.session_state["live_session"]
    audio, rate = sf.read(three_utterances_wav.path, dtype="float32")
    session.push(audio[:rate], rate)  # during the handshake
    at.run()
    assert at.session_state["live_session"] is session and session.saved is None and not session.stopped
    state.signalling, state.playing = False, True
    at.run()
    session.push(audio[rate:], rate)
    state.playing = False  # Stop
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert session.saved is not None and session.saved.result.duration_s == pytest.approx(len(audio) / rate, abs=0.05)
    assert any(f"Saved session {session.id}" in t for t in shown(at, "success"))
    assert at.session_state["live_session"] is not session  # ready for the next Start


# ----------------------------------------------------------------------------- exports
def test_file_exports_carry_every_chunk_and_mark_absent_classes(filled_warehouse):
    from dashboard import report

    db = str(filled_warehouse.db)
    fid = file_id(db, "03-01-01-01-01-01-03.flac")
    payload = json.loads(report.file_json(db, fid))
    assert payload["warning"] and "not emotions" in payload["warning"]
    chunk = payload["chunks"][0]
    assert chunk["base"]["fear"] is None and chunk["base"]["surprise"] is None
    assert abs(sum(v for v in chunk["base"].values() if v is not None) - 1.0) < 1e-3
    csv = pd.read_csv(pd.io.common.BytesIO(report.file_csv(db, fid)))
    assert len(csv) == len(payload["chunks"]) and csv["fear"].isna().all()


def test_file_pdf_report_has_the_charts_and_the_untrained_warning(filled_warehouse):
    from dashboard import report

    db = str(filled_warehouse.db)
    pdf = report.file_pdf(db, file_id(db, CONVERSATION_NAME))
    assert pdf.startswith(b"%PDF")
    assert b"not emotions" in pdf  # the document's subject carries the warning
    # timeline + distribution + per explained chunk: SHAP, LIME, attention (4 chunks, first 5 drawn)
    assert pdf.count(b"/Subtype /Image") >= 2 + 3 * 4


def test_selection_exports_follow_the_filters(filled_warehouse):
    from dashboard import data, report

    db = str(filled_warehouse.db)
    folder = str(filled_warehouse.corpus / "Actor_01")
    flt = Filters(folders=(folder,), include_untrained=True)
    csv = pd.read_csv(pd.io.common.BytesIO(report.selection_csv(db, flt)))
    ok = files_of(db).query("status == 'ok' and folder == @folder")
    assert set(csv["folder"]) == {folder} and len(csv) == ok["n_chunks"].sum()
    payload = json.loads(report.selection_json(db, flt))
    assert payload["figures"]["chunks"] == len(csv) and "warning" in payload
    pdf = report.selection_pdf(db, flt)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Subtype /Image") >= 3
    assert not json.loads(report.selection_json(db, Filters(folders=(folder,))))["chunks"]


def test_overview_says_what_the_compact_model_is_and_how_well_it_does_on_unseen_speakers(monkeypatch, tmp_path):
    import json

    import warehouse
    from pipeline.compact import COMPACT_DIR
    from warehouse.synth import fake_file_result

    db = tmp_path / "compact.duckdb"
    result = fake_file_result(5, "/recordings/c.wav", n_chunks=3, trained=True)
    result.models.emotion = "compact"
    warehouse.Warehouse(db).write_result("/recordings/c.wav", "c" * 64, result)
    at = open_page(make_app(monkeypatch, db), "overview")
    uar = json.loads((COMPACT_DIR / "config.json").read_text())["cross_validation"]["uar_mean"]
    captions = [t for t in texts(at, "caption") if t.startswith("The compact model")]
    assert len(captions) == 1 and f"{uar:.0%} balanced accuracy on actors it never heard" in captions[0]


def test_overview_of_another_model_has_no_compact_model_caption(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    assert not [t for t in texts(at, "caption") if t.startswith("The compact model")]


# ----------------------------------------------------------------------------- caveats, user text, links
def _caveat_texts(at) -> list[str]:
    return shown(at, "caption")


@pytest.mark.parametrize("page", ["file", "explain"])
def test_file_and_explain_say_what_the_model_is_and_the_intended_use(monkeypatch, tmp_path, page):
    import warehouse
    from dashboard.caveats import INTENDED_USE
    from pipeline.compact import card_summary
    from warehouse.synth import fake_file_result

    db = tmp_path / "compact.duckdb"
    result = fake_file_result(5, "/recordings/c.wav", n_chunks=3, trained=True)
    result.models.emotion = "compact"
    fid = warehouse.Warehouse(db).write_result("/recordings/c.wav", "c" * 64, result)
    at = open_page(make_app(monkeypatch, db), page, file=fid)
    captions = _caveat_texts(at)
    assert card_summary() in captions and INTENDED_USE in captions


def test_live_page_says_what_loads_why_whisper_is_off_and_what_the_model_is(monkeypatch, tmp_path, tiny_hubert_dir):
    import types

    import streamlit_webrtc

    from dashboard.caveats import INTENDED_USE

    state = types.SimpleNamespace(playing=False, signalling=False)
    monkeypatch.setattr(streamlit_webrtc, "webrtc_streamer", lambda **kw: types.SimpleNamespace(state=state))
    at = open_page(make_app(monkeypatch, tmp_path / "live.duckdb", emotion_model=tiny_hubert_dir,
                            whisper_model="none", data_dir=tmp_path / "data"), "live")
    loaded = texts(at, "text")
    for step in ("Emotion model", "Whisper (none)", "Warm-up analysis"):
        assert any(t.startswith(step) and ": ready (" in t for t in loaded), loaded
    assert any(t.startswith("Whisper is off: the configuration sets whisper_model = 'none'") for t in shown(at, "info"))
    captions = shown(at, "caption")
    assert INTENDED_USE in captions
    assert any("untrained (random weights" in t and "not emotions" in t for t in captions)


def test_reports_carry_the_model_caveat_and_the_intended_use(default_warehouse):
    from dashboard import data, report
    from dashboard.caveats import INTENDED_USE, model_caveat

    db = str(default_warehouse)
    info = data.file_info(db, file_id(db, CONVERSATION_NAME))
    said = report.file_report(db, int(info["file_id"])).plain
    assert INTENDED_USE in said and model_caveat(info["emotion_model"], False) in said
    said = report.selection_report(db, Filters(include_untrained=True)).plain
    assert INTENDED_USE in said and model_caveat(info["emotion_model"], False) in said


def test_the_superb_model_caveat_names_its_data_classes_and_accuracy_on_unseen_speakers():
    from dashboard.caveats import model_caveat

    text = model_caveat("superb/hubert-base-superb-er", True)
    assert "IEMOCAP" in text and "fear and surprise are absent" in text and "65 %" in text
    assert "not recorded here" in model_caveat("/models/someone-elses", True)


HOSTILE = "/recordings/[click](http://evil.example/x) ![img](http://evil.example/i.png) <img src=x> $x$ :red[hi].wav"


@pytest.mark.parametrize("page", ["file", "explain", "overview"])
def test_file_names_and_transcripts_are_shown_as_text_not_markdown(monkeypatch, tmp_path, page):
    import warehouse
    from warehouse.synth import fake_file_result

    db = tmp_path / "hostile.duckdb"
    result = fake_file_result(7, HOSTILE, n_chunks=2, trained=True)
    result.chunks[0].transcript = "see ![pic](http://evil.example/t.png) and [here](http://evil.example)"
    fid = warehouse.Warehouse(db).write_result(HOSTILE, "d" * 64, result)
    at = open_page(make_app(monkeypatch, db), page, file=fid)
    markdown_kinds = ("markdown", "caption", "info", "warning", "error", "success", "title", "header", "subheader")
    rendered = [t for kind in markdown_kinds for t in texts(at, kind)]
    for raw in (r"\]\(http", "<img", r"\$x\$", r":red\["):  # the Markdown that would act, unescaped
        assert not [t for t in rendered if re.search(r"(?<!\\)" + raw, t)], raw
    if page == "file":
        assert HOSTILE in [c.value for c in at.code]  # the path itself, verbatim, as code
        assert result.chunks[0].transcript in texts(at, "text")
        assert any(t == HOSTILE.rsplit("/", 1)[-1] for t in shown(at, "subheader"))


def test_a_link_to_an_unknown_or_malformed_file_or_chunk_says_so(monkeypatch, filled_warehouse):
    db = filled_warehouse.db
    at = open_page(make_app(monkeypatch, db), "file", file=987654)
    assert any("File #987654 from the link is not in this warehouse" in t for t in shown(at, "warning"))
    at = open_page(make_app(monkeypatch, db), "explain", file="seven")
    assert any("The link's file id “seven” is not a number" in t for t in shown(at, "warning"))
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db), "explain", file=fid, chunk=987654)
    assert any("Chunk #987654 from the link is not a chunk of this file" in t for t in shown(at, "warning"))
    assert int(at.selectbox(key="explain_file").value) == fid
    failed = int(files_of(db).query("status == 'failed'")["file_id"].iloc[0])
    at = open_page(make_app(monkeypatch, db), "file", file=failed)
    assert any(f"File #{failed} from the link has no results" in t for t in shown(at, "warning"))


def test_a_link_opens_that_file_and_chunk(monkeypatch, filled_warehouse):
    import warehouse

    db = filled_warehouse.db
    fid = file_id(db, "03-01-04-01-02-01-02.flac")  # not the newest file
    chunk = int(warehouse.read_df("SELECT max(chunk_id) AS c FROM chunks WHERE file_id = ?", [fid], db=db)["c"][0])
    at = open_page(make_app(monkeypatch, db), "explain", file=fid, chunk=chunk)
    assert int(at.selectbox(key="explain_file").value) == fid
    assert int(at.selectbox(key="explain_chunk").value) == chunk
    assert not [t for t in shown(at, "warning") if "link" in t]


def test_file_search_selects_its_match_and_says_when_nothing_matches(monkeypatch, filled_warehouse):
    db = filled_warehouse.db
    at = open_page(make_app(monkeypatch, db), "file")
    at.text_input(key="file_search").input("Actor_02").run()
    assert int(at.selectbox(key="file_file").value) == file_id(db, "03-01-04-01-02-01-02.flac")
    assert any("03-01-04-01-02-01-02.flac" in t for t in shown(at, "subheader"))
    at.text_input(key="file_search").input("no-such-recording").run()
    assert any("No analysed file's path contains “no-such-recording”" in t for t in shown(at, "warning"))
    assert int(at.selectbox(key="file_file").value) == file_id(db, "03-01-04-01-02-01-02.flac")  # kept


def test_file_page_draws_each_emotions_probability_over_time_and_leaves_absent_classes_out(
        monkeypatch, filled_warehouse):
    from dashboard import data

    db = filled_warehouse.db
    fid = file_id(db, CONVERSATION_NAME)
    at = open_page(make_app(monkeypatch, db), "file", file=fid)
    curve = chart_data(chart(at, "Probability over time per emotion"))
    stored = data.file_chunks(str(db), fid)
    assert len(curve) == 6 * len(stored)
    happy = curve[curve["emotion"] == "happiness"].sort_values("t")
    assert happy["probability"].round(9).tolist() == stored["happiness"].round(9).tolist()
    assert happy["t"].tolist() == ((stored["start_s"] + stored["end_s"]) / 2).tolist()
    at = open_page(make_app(monkeypatch, db), "file", file=file_id(db, "03-01-01-01-01-01-03.flac"))
    assert not {"fear", "surprise"} & set(chart_data(chart(at, "Probability over time per emotion"))["emotion"])


def test_file_timeline_spans_the_clip_and_a_click_on_a_band_picks_that_chunk():
    from dashboard import charts
    from dashboard.views.file import clicked_chunk

    chunks = pd.DataFrame({"chunk_id": [11, 12], "idx": [0, 1], "start_s": [0.5, 3.0], "end_s": [2.0, 4.0],
                           "dominant": ["anger", "fear"]})
    env = charts.envelope(0.01 * __import__("numpy").sin(__import__("numpy").arange(16000 * 5)), 16000)
    spec = charts.waveform_timeline(env, chunks, duration_s=5.0, clickable=True).to_dict()
    rect, wave = spec["layer"]
    assert rect["encoding"]["x"]["scale"]["domain"] == [0.0, 5.0] and rect["encoding"]["x"]["scale"]["nice"] is False
    assert wave["encoding"]["y"]["scale"]["domain"][1] == pytest.approx(0.011, rel=0.01)  # fitted to a quiet clip
    params = spec.get("params", []) + rect.get("params", [])
    assert [p["name"] for p in params] == [charts.BAND_SELECTION]
    assert params[0]["select"]["fields"] == ["chunk_id"]
    assert clicked_chunk({"selection": {charts.BAND_SELECTION: [{"chunk_id": 12}]}}) == 12
    assert clicked_chunk({"selection": {}}) is None


def test_overview_labels_folders_shortly_says_top_n_and_names_its_time_axis(monkeypatch, filled_warehouse):
    import warehouse

    from dashboard import charts

    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")
    at.checkbox(key="f_untrained").check().run()
    folders = chart_data(chart(at, "Emotion mix by folder"))
    assert sorted(set(folders["group"])) == ["Actor_01", "Actor_02", "Actor_03", "Actor_04"]
    assert any(t == "All 4 folders of this selection." for t in shown(at, "caption"))
    recorded = warehouse.read_df("SELECT count(recorded_at) AS n FROM files WHERE status = 'ok'",
                                 db=filled_warehouse.db)["n"][0]
    title = chart(at, "Emotions over time")["encoding"]["x"]["title"]
    assert title.startswith("ingestion time" if recorded == 0 else "recording time") and "(UTC)" in title
    assert charts.short_folders(["/a/x/calls/2024", "/a/y/calls/2024", "/a/x/sms"]) == [
        "x/calls/2024", "y/calls/2024", "sms"]


def test_runs_page_lists_each_runs_folder_and_models(monkeypatch, filled_warehouse):
    at = open_page(make_app(monkeypatch, filled_warehouse.db), "runs")
    runs = next(d.value for d in at.dataframe if "run_id" in d.value.columns)
    assert runs["folder"].tolist() == [str(filled_warehouse.corpus)]
    assert set(runs["emotion model"].iloc[0].split(", ")) == set(filled_warehouse.models.values())


def test_runs_page_ingests_a_typed_folder_only_inside_the_corpus_roots(monkeypatch, empty_warehouse, tmp_path):
    from dashboard import actions

    started: list = []
    monkeypatch.setattr(actions, "ingest_command",
                        lambda folder, db: started.append(folder) or [sys.executable, "-c", "pass"])
    corpus, outside = tmp_path / "corpus", tmp_path / "private"
    (corpus / "calls" / "2024").mkdir(parents=True)
    outside.mkdir()
    (corpus / "escape").symlink_to(outside)
    at = open_page(make_app(monkeypatch, empty_warehouse, corpus_roots=corpus, data_dir=tmp_path / "data"), "runs")
    assert not [o for o in at.selectbox(key="runs_folder").options if "escape" in o]  # links are not offered
    for bad in (str(corpus / "escape"), str(outside), str(corpus / "calls" / ".." / ".." / "private")):
        at.text_input(key="runs_path").input(bad).run()
        at.button(key="runs_start").click().run()
        assert any("outside the corpus roots" in t for t in shown(at, "error")), shown(at, "error")
    assert not started
    at.text_input(key="runs_path").input(str(corpus / "calls" / "2024")).run()
    at.button(key="runs_start").click().run()
    assert started == [(corpus / "calls" / "2024").resolve()]
    for job in actions.jobs():
        job.process.wait(30)


# ----------------------------------------------------------------------------- speakers (per file)
#: The speaker warehouse's files: path -> (speaker of each chunk, trained). Labels are per file.
TWO_VOICES = "/recordings/calls/*two* [voices](x).wav"  # Markdown in the name: must stay text
SPEAKER_FILES = {
    TWO_VOICES: (("S1", "S2", "S1", "S2", "S2", None), True),
    "/recordings/calls/three.wav": (("S1", "S2", "S3", "S1", "S3", "S2", "S1"), True),
    "/recordings/calls/one.wav": (("S1", "S1", "S1"), True),
    "/recordings/calls/unlabelled.wav": ((None, None, None), True),
    "/recordings/random/untrained.wav": (("S1", "S2", "S1", "S2"), False),
}


@pytest.fixture(scope="module")
def speaker_warehouse(tmp_path_factory) -> Path:
    """Files with 3, 2, 1 and no speaker labels (one of them untrained), written by the real store API."""
    import warehouse
    from warehouse.synth import fake_file_result

    db = tmp_path_factory.mktemp("speakers") / "speakers.duckdb"
    store = warehouse.Warehouse(db)
    for seed, (path, (labels, trained)) in enumerate(SPEAKER_FILES.items()):
        result = fake_file_result(40 + seed, path, n_chunks=len(labels), trained=trained, explain=False)
        for chunk, label in zip(result.chunks, labels):
            chunk.speaker = label
        store.write_result(path, f"{seed:064x}", result)
    return db


def stored_speakers(db, path: str) -> pd.DataFrame:
    import warehouse

    return warehouse.read_df("SELECT c.idx, c.speaker, c.dominant FROM chunks c JOIN files f USING (file_id) "
                             "WHERE f.path = ? ORDER BY c.idx", [path], db=db)


def test_file_page_draws_an_emotion_timeline_per_speaker_and_names_each_chunks_speaker(monkeypatch,
                                                                                       speaker_warehouse):
    db = speaker_warehouse
    at = open_page(make_app(monkeypatch, db), "file", file=file_id(db, "(x).wav"))
    stored = stored_speakers(db, TWO_VOICES)
    spec = chart(at, "Emotion timeline per speaker")
    drawn = chart_data(spec).sort_values("chunk")
    assert drawn["speaker"].tolist() == stored["speaker"].fillna("(no label)").tolist()
    assert drawn["label"].tolist() == stored["dominant"].tolist()
    assert spec["encoding"]["y"]["sort"] == ["S1", "S2", "(no label)"]
    assert "not emotions" not in title_of(spec)
    assert any("2 voices" in t and "1 chunk(s) too short" in t for t in texts(at, "caption"))
    table = at.dataframe[0].value
    assert table["speaker"].tolist() == stored["speaker"].fillna("").tolist()
    at.selectbox(key="file_chunk").select_index(1).run()
    assert any(m.value.startswith("**Chunk 1**") and m.value.endswith("speaker S2") for m in at.markdown)


def test_file_page_speaker_timeline_of_an_untrained_model_says_its_classes_are_not_emotions(monkeypatch,
                                                                                           speaker_warehouse):
    at = open_page(make_app(monkeypatch, speaker_warehouse), "file", file=file_id(speaker_warehouse, "untrained.wav"))
    spec = chart(at, "Emotion timeline per speaker")
    assert "not emotions" in title_of(spec) and spec["encoding"]["color"]["title"] == "top class (not an emotion)"


@pytest.mark.parametrize("name, line", [("one.wav", "Speakers: one voice."),
                                        ("unlabelled.wav", "Speakers: speaker labels were not computed")])
def test_file_page_with_one_voice_or_no_labels_says_so_in_one_line_and_draws_no_speaker_chart(
        monkeypatch, speaker_warehouse, name, line):
    at = open_page(make_app(monkeypatch, speaker_warehouse), "file", file=file_id(speaker_warehouse, name))
    assert not [c for c in charts(at) if "per speaker" in title_of(c)]
    assert [t for t in texts(at, "caption") if t.startswith("Speakers:")] == [
        next(t for t in texts(at, "caption") if t.startswith(line))]
    assert set(at.dataframe[0].value["speaker"]) == ({"S1"} if name == "one.wav" else {""})


def test_file_page_of_a_really_analysed_one_actor_conversation_says_one_voice(monkeypatch, filled_warehouse):
    db = filled_warehouse.db
    at = open_page(make_app(monkeypatch, db), "file", file=file_id(db, CONVERSATION_NAME))
    stored = stored_speakers(db, str(filled_warehouse.files[CONVERSATION_NAME]))
    assert stored["speaker"].nunique() == 1, stored  # four clips of one actor: one voice
    assert any(t.startswith("Speakers: one voice") for t in texts(at, "caption"))
    assert at.dataframe[0].value["speaker"].tolist() == stored["speaker"].tolist()


def test_overview_mixes_emotions_per_speaker_within_each_file_and_never_across_files(monkeypatch,
                                                                                    speaker_warehouse):
    import warehouse

    db = speaker_warehouse
    at = open_page(make_app(monkeypatch, db), "overview")
    spec = chart(at, "Emotion mix per speaker")
    drawn = chart_data(spec)
    rows = ["*two* [voices](x).wav · S1", "*two* [voices](x).wav · S2",
            "three.wav · S1", "three.wav · S2", "three.wav · S3"]
    assert sorted(set(drawn["row"])) == sorted(rows)  # one voice, no labels and untrained files are left out
    assert spec["encoding"]["y"]["sort"] == rows[2:] + rows[:2]  # the file with most chunks first, then S1, S2...
    stored = warehouse.read_df("""
        SELECT f.path, c.speaker, c.dominant AS label, count(*) AS chunks FROM chunks c JOIN files f USING (file_id)
        WHERE f.emotion_trained AND c.speaker IS NOT NULL AND f.path IN (?, ?) GROUP BY ALL""",
                               [TWO_VOICES, "/recordings/calls/three.wav"], db=db)
    got = drawn.groupby(["path", "speaker", "label"])["chunks"].sum()
    want = stored.set_index(["path", "speaker", "label"])["chunks"]
    assert got.sort_index().to_dict() == want.sort_index().to_dict()
    assert "not emotions" not in title_of(spec)
    assert any("All 2 files with several speakers" in t for t in texts(at, "caption"))

    at.checkbox(key="f_untrained").check().run()
    spec = chart(at, "Emotion mix per speaker")
    assert "not emotions" in title_of(spec)
    assert {"untrained.wav · S1", "untrained.wav · S2"} <= set(chart_data(spec)["row"])


def test_overview_per_speaker_mix_says_top_n_of_m_and_when_no_file_has_several_speakers(
        monkeypatch, speaker_warehouse, filled_warehouse):
    from dashboard.views import overview

    monkeypatch.setattr(overview, "TOP_GROUPS", 1)
    at = open_page(make_app(monkeypatch, speaker_warehouse), "overview")
    assert set(chart_data(chart(at, "Emotion mix per speaker"))["path"]) == {"/recordings/calls/three.wav"}
    assert any("Showing the 1 files with several speakers" in t and "of 2" in t for t in texts(at, "caption"))

    at = open_page(make_app(monkeypatch, filled_warehouse.db), "overview")  # one actor per file: one voice each
    at.checkbox(key="f_untrained").check().run()
    assert not [c for c in charts(at) if "per speaker" in title_of(c)]
    assert any(t.startswith("No file in this selection has more than one speaker") for t in texts(at, "info"))
