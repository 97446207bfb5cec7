"""One writer and many readers share the database: no errors on either side, nothing lost.

Processes are started with 'spawn' (DuckDB and fork do not mix); the workers below are module-level
so the children can import them.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import warehouse
from warehouse import Warehouse, WarehouseBusyError, queries, query, read_df
from warehouse.connection import ensure_database, read_connection, write_connection
from warehouse.synth import fake_file_result

N_FILES = 24
N_CHUNKS = 4
N_READERS = 3


def _result(i: int, source_tag: str = "batch"):
    return fake_file_result(i, f"/corpus/{source_tag}/f{i % 3}/clip_{i:03d}.wav", n_chunks=N_CHUNKS, trained=True)


def _expected_emotion_rows(indices, tag="batch") -> int:
    total = 0
    for i in indices:
        r = _result(i, tag)
        total += sum(6 + len(c.extra) + len(c.granular) + len(c.complex) for c in r.chunks)
    return total


def _writer(db: str, indices: list[int], tag: str, source: str, errors) -> None:
    try:
        store = Warehouse(db)
        run = store.start_run('{"test": "concurrency"}', source=source)
        for i in indices:
            store.write_result(None, f"sha-{tag}-{i}", _result(i, tag), run_id=run, source=source)
        store.finish_run(run, "completed")
    except BaseException as exc:  # noqa: BLE001 - everything is reported to the test
        errors.put(("writer", repr(exc)))


_SNAPSHOT = ("SELECT (SELECT count(*) FROM files WHERE status = 'ok') AS files, "
             "(SELECT count(*) FROM chunks) AS chunks")


def _reader(db: str, idx: int, errors, results, ready, stop) -> None:
    observations: list[tuple[int, int]] = []
    reads = 0
    try:
        while True:
            last = stop.is_set()
            snap = query(_SNAPSHOT, db=db)  # the analyst path (sandboxed, limited)
            observations.append((int(snap.files[0]), int(snap.chunks[0])))
            queries.emotion_mix("folder", db=db)  # a dashboard aggregation
            read_df("SELECT path FROM files ORDER BY file_id DESC LIMIT 5", db=db)  # an internal read
            reads += 3
            if reads == 3:
                ready.put(idx)
            if last:
                break
    except BaseException as exc:  # noqa: BLE001
        errors.put((f"reader {idx}", repr(exc)))
        ready.put(idx)
    results.put((idx, reads, observations))


def test_readers_in_other_processes_and_a_writer_share_the_database(tmp_path):
    db = str(tmp_path / "shared.duckdb")
    ensure_database(db)
    ctx = mp.get_context("spawn")
    errors, results, ready, stop = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Event()
    readers = [ctx.Process(target=_reader, args=(db, i, errors, results, ready, stop)) for i in range(N_READERS)]
    for p in readers:
        p.start()
    for _ in readers:  # every reader is reading before the writer starts
        ready.get(timeout=120)
    writer = ctx.Process(target=_writer, args=(db, list(range(N_FILES)), "batch", "batch", errors))
    writer.start()
    writer.join(timeout=180)
    stop.set()
    outcomes = [results.get(timeout=120) for _ in readers]
    for p in readers:
        p.join(timeout=60)
    failures = []
    while True:
        try:
            failures.append(errors.get(timeout=0.5))
        except queue.Empty:
            break
    assert writer.exitcode == 0 and failures == []

    seen = [obs for _, _, observations in outcomes for obs in observations]
    assert all(reads > 0 for _, reads, _ in outcomes)
    # Readers saw the ingestion in progress, and never a file without all of its chunks.
    assert any(0 < files < N_FILES for files, _ in seen), "readers never overlapped the writer"
    assert all(chunks == files * N_CHUNKS for files, chunks in seen)
    for _, _, observations in outcomes:  # each reader's view only grows
        assert [f for f, _ in observations] == sorted(f for f, _ in observations)
    # Every row is there at the end.
    assert int(read_df("SELECT count(*) FROM files WHERE status = 'ok'", db=db).iloc[0, 0]) == N_FILES
    assert int(read_df("SELECT count(*) FROM chunks", db=db).iloc[0, 0]) == N_FILES * N_CHUNKS
    assert int(read_df("SELECT count(*) FROM emotions", db=db).iloc[0, 0]) == _expected_emotion_rows(range(N_FILES))
    assert read_df("SELECT status FROM runs", db=db).status.tolist() == ["completed"]


def test_threads_of_one_process_read_and_write_together(tmp_path):
    """The dashboard and a live session in one Streamlit process: batch writer, live writer, readers."""
    db = str(tmp_path / "threads.duckdb")
    ensure_database(db)
    errors: queue.Queue = queue.Queue()
    stop = threading.Event()
    reads = [0, 0]

    def read_loop(k: int) -> None:
        try:
            while not stop.is_set():
                snap = query(_SNAPSHOT, db=db)
                assert int(snap.chunks[0]) == int(snap.files[0]) * N_CHUNKS
                queries.emotion_mix("hour", db=db)
                reads[k] += 1
        except BaseException as exc:  # noqa: BLE001
            errors.put((f"reader {k}", repr(exc)))

    readers = [threading.Thread(target=read_loop, args=(k,)) for k in range(2)]
    writers = [threading.Thread(target=_writer, args=(db, list(range(8)), "batch", "batch", errors)),
               threading.Thread(target=_writer, args=(db, list(range(100, 108)), "live", "live", errors))]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(timeout=180)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert list(errors.queue) == []
    assert min(reads) > 0
    counts = read_df("SELECT source, count(*) AS n FROM files GROUP BY source ORDER BY source", db=db)
    assert counts.values.tolist() == [["batch", 8], ["live", 8]]
    assert int(read_df("SELECT count(*) FROM chunks", db=db).iloc[0, 0]) == 16 * N_CHUNKS


# ----------------------------------------------------------------------------- programs outside the gate
def _hold(db: Path, read_only: bool) -> subprocess.Popen:
    """Another program (not EmotiVoice) holding the file until its stdin closes."""
    code = ("import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
            "print('held', flush=True); sys.stdin.read(); c.close()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(db), "ro" if read_only else "rw"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def test_a_writer_waits_for_a_foreign_reader_instead_of_failing(tmp_path):
    db = tmp_path / "w.duckdb"
    ensure_database(db)
    holder = _hold(db, read_only=True)
    outcome: list = []
    t = threading.Thread(target=lambda: outcome.append(
        Warehouse(db).write_result(None, "sha", fake_file_result(1, "/corpus/x.wav"))))
    try:
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive(), "the write should be waiting while another program reads"
    finally:
        _release(holder)
    t.join(timeout=60)
    assert outcome and int(read_df("SELECT count(*) FROM files", db=db).iloc[0, 0]) == 1


def test_a_reader_waits_for_a_foreign_writer(tmp_path):
    db = tmp_path / "w.duckdb"
    Warehouse(db).write_result(None, "sha", fake_file_result(2, "/corpus/x.wav"))
    holder = _hold(db, read_only=False)
    outcome: list = []
    t = threading.Thread(target=lambda: outcome.append(query("SELECT count(*) AS n FROM files", db=db).n[0]))
    try:
        t.start()
        t.join(timeout=1.0)
        assert t.is_alive()
    finally:
        _release(holder)
    t.join(timeout=60)
    assert outcome == [1]


def test_a_holder_that_never_lets_go_gives_a_clear_busy_error(tmp_path):
    db = tmp_path / "w.duckdb"
    ensure_database(db)
    holder = _hold(db, read_only=False)
    try:
        with pytest.raises(WarehouseBusyError, match=r"database .*w\.duckdb is busy: .*Conflicting lock.*-readonly"):
            with write_connection(db, wait_s=0.3):
                pass
        with pytest.raises(WarehouseBusyError, match="is busy"):
            with read_connection(db, wait_s=0.3):
                pass
    finally:
        _release(holder)
    assert warehouse.query("SELECT 1 AS one", db=db).one[0] == 1


def test_a_writer_of_this_process_gets_ahead_of_a_stream_of_readers(tmp_path):
    """Writer preference: with readers back to back, a write still gets its turn."""
    db = tmp_path / "w.duckdb"
    ensure_database(db)
    stop = threading.Event()
    errors: queue.Queue = queue.Queue()

    def hammer() -> None:
        try:
            while not stop.is_set():
                read_df("SELECT count(*) FROM emotions", db=db)
        except BaseException as exc:  # noqa: BLE001
            errors.put(repr(exc))

    readers = [threading.Thread(target=hammer) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        time.sleep(0.2)
        with write_connection(db, wait_s=30) as con:
            con.execute("INSERT INTO runs (run_id, started_at, status) VALUES (nextval('run_id_seq'), now()::TIMESTAMP, 'x')")
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=60)
    assert list(errors.queue) == []
    assert int(read_df("SELECT count(*) FROM runs", db=db).iloc[0, 0]) == 1


def test_a_burst_of_writes_lets_a_waiting_reader_in(tmp_path):
    """Reader fairness: writes back to back (like recording many skipped files) do not starve a reader."""
    db = tmp_path / "w.duckdb"
    ensure_database(db)
    store = Warehouse(db)
    n = 12
    progress = threading.Event()

    def burst() -> None:
        for i in range(n):
            store.write_skipped(f"/corpus/skipped_{i}.txt", "not audio: text file")
            if i == 1:
                progress.set()

    writer = threading.Thread(target=burst)
    writer.start()
    assert progress.wait(timeout=60)
    seen = int(read_df("SELECT count(*) FROM files", db=db).iloc[0, 0])
    writer.join(timeout=120)
    assert 2 <= seen < n, "the reader only got in after the whole burst"
    assert int(read_df("SELECT count(*) FROM files", db=db).iloc[0, 0]) == n


# ----------------------------------------------------------------------------- readers never cost the writer its results
def test_a_patient_writer_waits_for_a_long_reader_says_so_and_stores(tmp_path, monkeypatch):
    from warehouse import connection

    db = tmp_path / "w.duckdb"
    ensure_database(db)
    monkeypatch.setattr(connection, "WRITE_WAIT_S", 0.5)  # a plain writer would give up after 0.5 s
    held, release = threading.Event(), threading.Event()

    def long_reader() -> None:
        with read_connection(db):
            held.set()
            release.wait(timeout=60)

    reader = threading.Thread(target=long_reader)
    reader.start()
    assert held.wait(timeout=30)
    try:
        with pytest.raises(WarehouseBusyError, match="is busy"):  # what an impatient writer does
            Warehouse(db).write_result(None, "sha-x", fake_file_result(7, "/corpus/x.wav"))
        notices: list[str] = []
        outcome: list = []

        def patient() -> None:
            with connection.patient_writes(notices.append, every_s=0.3):
                outcome.append(Warehouse(db).write_result(None, "sha-y", fake_file_result(8, "/corpus/y.wav")))

        writer = threading.Thread(target=patient)
        writer.start()
        time.sleep(2.0)  # four times the wait budget of a plain writer
        assert writer.is_alive() and not outcome, "the patient writer gave up or got in past the reader"
        assert notices and all("waiting for readers" in n and str(db) in n and "as long as it takes" in n
                               for n in notices)
    finally:
        release.set()
        reader.join(timeout=30)
    writer.join(timeout=60)
    assert outcome and read_df("SELECT path FROM files", db=db).path.tolist() == ["/corpus/y.wav"]


@pytest.fixture(scope="module")
def prefect_backend(tmp_path_factory):
    import os

    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def test_an_ingestion_behind_a_long_reader_stages_waits_and_stores_its_results(
        prefect_backend, tmp_path, monkeypatch, ravdess_dir, tiny_hubert_dir):
    """The trust issue's case: a reader with no time limit used to make the flow give up and lose its results."""
    import logging
    import shutil

    from flows.ingest import ingest_folder, staging_dir
    from pipeline.config import Config
    from warehouse import connection

    config = Config().replace(emotion_model=str(tiny_hubert_dir), whisper_model="none", explain="none",
                              db=str(tmp_path / "ev.duckdb"), data_dir=str(tmp_path / "data"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for clip in sorted((ravdess_dir / "Actor_05").glob("*.flac"))[:2]:
        shutil.copy(clip, corpus / clip.name)
    ensure_database(config.db)
    monkeypatch.setattr(connection, "WRITE_WAIT_S", 1.0)  # the old behaviour would fail within a second
    monkeypatch.setattr(connection, "WAIT_NOTICE_S", 0.5)

    messages: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Grab(level=logging.WARNING)
    flow_logger = logging.getLogger("prefect.flow_runs")
    flow_logger.addHandler(handler)
    seen: dict = {}
    started = threading.Event()

    def long_reader() -> None:
        """Waits for the run to start, then holds the database like `sql --timeout 0` would, until the
        flow has staged its results and said it waits (or 120 s pass)."""
        while not started.is_set():
            if int(read_df("SELECT count(*) FROM runs", db=config.db).iloc[0, 0]) > 0:
                started.set()
            else:
                time.sleep(0.05)
        with read_connection(config.db) as con:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 120:
                staged = list(staging_dir(config).glob("*.pkl"))
                waiting = [m for m in messages if "waiting for readers" in m]
                if len(staged) == 2 and waiting and time.monotonic() - t0 > 3:
                    break
                time.sleep(0.1)
            seen.update(staged=len(staged), waiting=waiting, held_s=time.monotonic() - t0,
                        files=con.execute("SELECT count(*) FROM files").fetchall()[0][0])

    reader = threading.Thread(target=long_reader)
    reader.start()
    try:
        summary = ingest_folder(corpus, options=config)
    finally:
        started.set()
        reader.join(timeout=180)
        flow_logger.removeHandler(handler)
    # While the reader held the database: both results durably staged, nothing stored yet, the flow said it waits.
    assert seen["staged"] == 2 and seen["files"] == 0 and seen["held_s"] > 3, seen
    assert "analysed files stay staged in" in seen["waiting"][0] and config.db in seen["waiting"][0]
    # After the reader let go: everything stored, staging emptied, the run completed.
    assert summary.status == "completed" and summary.files_ok == 2
    assert int(read_df("SELECT count(*) FROM files WHERE status = 'ok'", db=config.db).iloc[0, 0]) == 2
    assert not list(staging_dir(config).glob("*.pkl"))
