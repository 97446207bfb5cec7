"""Who spoke: per-chunk speaker labels from resemblyzer embeddings, clustered within each file, stored."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from pipeline import speakers
from pipeline.chunking import chunk_speech
from pipeline.config import Config
from pipeline.speakers import assign_speakers, cluster_embeddings, labels_in_order, parse_speakers
from pipeline.types import Chunk

SR = 16000
TURNS = (1, 2, 1, 3, 2, 3, 1, 2)  # actors 1 and 3 male, 2 female


@dataclass
class Conversation:
    samples: np.ndarray
    spans: list[tuple[float, float]]  # each turn's clip, seconds
    actors: list[int]


@pytest.fixture(scope="module")
def conversation(ravdess_dir) -> Conversation:
    """Eight RAVDESS clips of three actors joined end to end (their own silences are the pauses)."""
    with open(ravdess_dir / "manifest.csv", newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["path"])
    by_actor = {a: [r["path"] for r in rows if int(r["actor"]) == a] for a in set(TURNS)}
    used = {a: 0 for a in by_actor}
    parts, spans, t = [], [], 0.0
    for a in TURNS:
        x, rate = sf.read(str(ravdess_dir / by_actor[a][used[a]]), dtype="float32")
        assert rate == SR
        used[a] += 1
        parts.append(x)
        spans.append((t, t + len(x) / SR))
        t += len(x) / SR
    return Conversation(np.concatenate(parts), spans, list(TURNS))


def _turn_labels(conv: Conversation, chunks: list[Chunk], labels: list[str | None]) -> list[str | None]:
    """The label of the chunk overlapping each turn most."""
    out = []
    for a, b in conv.spans:
        over = [(min(b, c.end_s) - max(a, c.start_s), lab) for c, lab in zip(chunks, labels)]
        best = max(over)
        out.append(best[1] if best[0] > 0 else None)
    return out


@pytest.fixture(scope="module")
def conv_chunks(conversation) -> list[Chunk]:
    chunks = chunk_speech(conversation.samples, SR, Config()).chunks
    assert len(chunks) == len(TURNS)  # one per turn: the clips' pauses are over a second
    return chunks


# ------------------------------------------------------------------------------------------ real voices


def test_auto_tells_a_male_and_a_female_actor_apart(conversation, conv_chunks):
    pick = [i for i, a in enumerate(TURNS) if a in (1, 2)]
    got = assign_speakers(conversation.samples, [conv_chunks[i] for i in pick], Config(speakers="auto"))
    assert got.mode == "auto" and got.n_speakers == 2
    assert got.labels == ["S1" if TURNS[i] == 1 else "S2" for i in pick]


def test_a_given_number_of_speakers_separates_three_actors_numbered_by_first_appearance(conversation, conv_chunks):
    got = assign_speakers(conversation.samples, conv_chunks, Config(speakers="3"))
    assert got.mode == "fixed" and got.n_speakers == 3
    assert _turn_labels(conversation, conv_chunks, got.labels) == ["S1", "S2", "S1", "S3", "S2", "S3", "S1", "S2"]
    # more speakers asked than chunks: one each, never more labels than chunks
    few = assign_speakers(conversation.samples, conv_chunks[:3], Config(speakers="5"))
    assert few.labels == ["S1", "S2", "S3"]


def test_max_speakers_caps_an_estimate_that_would_split_every_chunk(conversation, conv_chunks):
    uncapped = assign_speakers(conversation.samples, conv_chunks, Config(speaker_threshold=0.02, max_speakers=99))
    assert uncapped.n_speakers > 3
    got = assign_speakers(conversation.samples, conv_chunks, Config(speaker_threshold=0.02, max_speakers=3))
    assert got.n_speakers == 3
    assert _turn_labels(conversation, conv_chunks, got.labels) == ["S1", "S2", "S1", "S3", "S2", "S3", "S1", "S2"]


def test_speakers_none_labels_nothing_and_loads_nothing(conversation, conv_chunks, monkeypatch):
    monkeypatch.setattr(speakers, "load_encoder", lambda *a: pytest.fail("encoder loaded"))
    got = assign_speakers(conversation.samples, conv_chunks, Config(speakers="none"))
    assert got.labels == [None] * len(conv_chunks) and got.mode == "none"


def test_a_single_chunk_is_s1_without_the_encoder_and_a_sliver_is_unlabelled(conversation, monkeypatch):
    monkeypatch.setattr(speakers, "load_encoder", lambda *a: pytest.fail("encoder loaded"))
    assert assign_speakers(conversation.samples, [Chunk(0.9, 2.9)], Config()).labels == ["S1"]
    assert assign_speakers(conversation.samples, [Chunk(1.0, 1.3)], Config()).labels == [None]


def test_a_short_chunk_takes_the_label_of_the_nearest_voice(conversation, conv_chunks):
    # a 0.8 s piece of the third turn (actor 1) among whole turns: it must not found a cluster of its own
    third = conv_chunks[2]
    short = Chunk(third.start_s + 0.3, third.start_s + 1.1)
    chunks = conv_chunks[:2] + [short] + conv_chunks[3:]
    got = assign_speakers(conversation.samples, chunks, Config(speakers="3"))
    assert got.labels[2] == got.labels[0] == "S1"
    assert got.labels[3] == got.labels[5] == "S3" and got.labels[1] == got.labels[4] == "S2"


def test_without_resemblyzer_the_labels_are_none_with_a_note(conversation, conv_chunks, monkeypatch, caplog):
    def broken(*a):
        raise speakers.SpeakerEncoderUnavailable("resemblyzer could not be imported (No module named 'webrtcvad')")

    monkeypatch.setattr(speakers, "load_encoder", broken)
    with caplog.at_level("WARNING", logger="pipeline.speakers"):
        got = assign_speakers(conversation.samples, conv_chunks, Config())
    assert got.labels == [None] * len(conv_chunks)
    assert "speaker labels unavailable" in got.note and "webrtcvad" in got.note
    assert any("webrtcvad" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("value, parsed", [("auto", "auto"), ("None", "none"), ("3", 3), (2, 2), (" 1 ", 1)])
def test_the_speakers_option_reads_auto_none_or_a_count(value, parsed):
    assert parse_speakers(value) == parsed


@pytest.mark.parametrize("value", ["0", "-2", "two", "", "2.5"])
def test_a_bad_speakers_option_is_refused_naming_it(value):
    with pytest.raises(ValueError, match="'speakers'.*'auto', 'none' or a number"):
        parse_speakers(value)


def test_labels_are_numbered_by_first_appearance():
    assert labels_in_order([4, 4, 0, None, 2, 0]) == ["S1", "S1", "S2", None, "S3", "S2"]


def _blobs(centers: int, per: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((centers, 32))
    truth = np.repeat(np.arange(centers), per)
    x = base[truth] + spread * rng.standard_normal((len(truth), 32))
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def test_clustering_estimates_the_number_of_well_separated_voices_and_skips_missing_embeddings():
    x, truth = _blobs(4, 5, 0.1)
    x[7] = np.nan
    ids = cluster_embeddings(x, threshold=0.4, max_speakers=8)
    assert ids[7] is None
    kept = [i for i in range(len(ids)) if ids[i] is not None]
    pairs = {(truth[i], ids[i]) for i in kept}
    assert len(pairs) == 4 and len({p[1] for p in pairs}) == 4  # a one-to-one match with the truth
    assert cluster_embeddings(np.full((3, 32), np.nan)) == [None, None, None]


def test_a_short_row_joins_the_nearest_cluster_instead_of_shaping_them():
    x, truth = _blobs(2, 4, 0.1, seed=3)
    durations = np.array([2.0] * 8)
    durations[5] = 0.6
    ids = cluster_embeddings(x, durations, n_speakers=None, threshold=0.4)
    assert ids[5] == ids[4] == ids[6] and len(set(ids)) == 2


# ------------------------------------------------------------------------------------------ pipeline + warehouse


def test_analysis_stores_each_chunks_speaker_and_live_analysis_does_not_label(conversation, tmp_path):
    from pipeline.analyze import Analyzer
    from warehouse import Warehouse, read_df

    analyzer = Analyzer(Config(emotion_model="compact", whisper_model="none", explain="none", speakers="3"))
    result = analyzer.analyze_signal(conversation.samples, SR, name="conversation")
    labels = [c.speaker for c in result.chunks]
    assert labels == ["S1", "S2", "S1", "S3", "S2", "S3", "S1", "S2"]
    assert result.settings["chunking"]["chunker"] == "vad" and result.settings["speakers"]["speakers"] == "3"
    assert result.to_json_dict()["chunks"][1]["speaker"] == "S2"
    assert "speakers_s" in result.timings

    db = tmp_path / "w.duckdb"
    Warehouse(db).write_result(None, "sha-conv", result)
    stored = read_df("SELECT speaker FROM chunks ORDER BY idx", db=db).speaker.tolist()
    assert stored == labels

    live = analyzer.analyze_signal(conversation.samples, SR, name="live", live=True)
    assert live.chunks and all(c.speaker is None for c in live.chunks)
    assert live.settings["speakers"] is None


def test_an_older_database_gains_the_speaker_column_with_nulls(tmp_path):
    import duckdb

    import warehouse
    from warehouse import Warehouse, read_df
    from warehouse.schema import migrate
    from warehouse.synth import fake_file_result

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db), config={"storage_compatibility_version": warehouse.STORAGE_COMPATIBILITY})
    migrate(con, str(db), target=3)
    con.close()
    Warehouse(db).write_result(None, "sha-a", fake_file_result(1, "/calls/a.wav"))  # upgrades, then writes
    got = read_df("SELECT speaker FROM chunks", db=db)
    assert len(got) and got.speaker.isna().all()  # synthetic results carry no speaker: NULL, never guessed
