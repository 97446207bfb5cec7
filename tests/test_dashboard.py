"""The dashboard, page by page, through Streamlit's AppTest (in-process, no browser).

Every page runs on an empty database and on ``filled_warehouse`` (RAVDESS clips really analysed by the
tiny random-weight models, so every file is flagged untrained). Charts are read from their Vega-Lite
specs and datasets, tables from ``at.dataframe[i].value``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from tests.fixtures_warehouse_data import CONVERSATION_NAME, FAILED_REASON, copy_warehouse

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboard" / "app.py"
PAGES = {
    "overview": None, "file": "pages/2_File.py", "explain": "pages/3_Explain.py", "sql": "pages/4_SQL.py",
    "runs": "pages/5_Runs.py", "live": "pages/6_Live.py",
}


# ----------------------------------------------------------------------------- helpers
def make_app(monkeypatch, db, **env):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EMOTIVOICE_DB", str(db))
    monkeypatch.delenv("EMOTIVOICE_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(f"EMOTIVOICE_{key.upper()}", str(value))
    return AppTest.from_file(str(APP), default_timeout=180)


def open_page(at, page: str, **query):
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
    assert any(CONVERSATION_NAME in m.value for m in at.markdown)


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
    assert any(filled_warehouse.models["seed"] in t for t in texts(at, "caption"))


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
    assert any(f"Saved session {session.id}" in m.value for m in at.success)
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
    flt = data.Filters(folders=(folder,), include_untrained=True)
    csv = pd.read_csv(pd.io.common.BytesIO(report.selection_csv(db, flt)))
    ok = files_of(db).query("status == 'ok' and folder == @folder")
    assert set(csv["folder"]) == {folder} and len(csv) == ok["n_chunks"].sum()
    payload = json.loads(report.selection_json(db, flt))
    assert payload["figures"]["chunks"] == len(csv) and "warning" in payload
    pdf = report.selection_pdf(db, flt)
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Subtype /Image") >= 3
    assert not json.loads(report.selection_json(db, data.Filters(folders=(folder,))))["chunks"]


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
