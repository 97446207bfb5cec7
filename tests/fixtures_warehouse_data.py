"""Warehouses filled by really analysing RAVDESS clips with the tiny random-weight models.

Fixtures:
    filled_warehouse (session): a database written through ``Warehouse.write_result`` by one run:
        four clips copied into ``<tmp>/corpus/<actor>/`` (so paths, folders and audio exist),
        analysed by ``Analyzer.analyze_file`` — three with the seed-form tiny HuBERT (one of them also
        transcribed by the tiny random Whisper), one with the superb-shaped tiny model that lacks
        fear and surprise — and one multi-chunk file joined from four clips of actor 04
        (``Actor_04/conversation.flac``, seed-form model); fast explanations with a faithfulness
        check on every chunk, plus one file recorded as failed ("not audio"). Every emotion model
        here is untrained, so every file has ``emotion_trained = false``. Treat it as read-only;
        copy it (``copy_warehouse``) to write.
    empty_warehouse (function): a new database with the schema and no rows.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: (actor folder, clip name, model key, transcribe) for the filled warehouse.
CLIPS: tuple[tuple[str, str, str, bool], ...] = (
    ("Actor_01", "03-01-05-02-01-01-01.flac", "seed", True),   # angry, strong intensity
    ("Actor_01", "03-01-03-01-01-01-01.flac", "seed", False),  # happy
    ("Actor_02", "03-01-04-01-02-01-02.flac", "seed", False),  # sad
    ("Actor_03", "03-01-01-01-01-01-03.flac", "superb", False),  # neutral; model lacks fear, surprise
)
#: Clips joined (with 1 s of silence between them) into one multi-chunk file, Actor_04/conversation.flac.
CONVERSATION = ("03-01-05-01-01-01-04.flac", "03-01-03-01-02-01-04.flac", "03-01-04-02-01-01-04.flac",
                "03-01-01-01-02-01-04.flac")
CONVERSATION_NAME = "conversation.flac"
FAILED_NAME = "notes.wav"
FAILED_REASON = "not audio: the file is text, not audio"


@dataclass(frozen=True)
class FilledWarehouse:
    """A filled database and what went into it."""

    db: Path
    corpus: Path
    """Folder holding the analysed copies (one sub-folder per actor) and the failed file."""
    config: object
    """The pipeline Config of the seed-form files (tiny HuBERT, no Whisper): reruns explanations."""
    files: dict[str, Path] = field(default_factory=dict)
    """Clip name -> its path in ``corpus``."""
    failed: Path | None = None
    run_id: int = 0
    models: dict[str, str] = field(default_factory=dict)
    """'seed' / 'superb' -> the emotion model id stored in files.emotion_model."""


def write_conversation(ravdess_dir: Path, dest: Path) -> Path:
    """Join the ``CONVERSATION`` clips of actor 04, 1 s of silence apart, into one 16 kHz FLAC."""
    import numpy as np
    import soundfile as sf

    parts = []
    for name in CONVERSATION:
        data, sr = sf.read(str(ravdess_dir / "Actor_04" / name), dtype="float32")
        assert sr == 16000, f"{name}: expected 16 kHz, got {sr}"
        parts += [data, np.zeros(sr, dtype=np.float32)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(dest), np.concatenate(parts[:-1]), 16000, format="FLAC")
    return dest


def copy_warehouse(src: Path, dest_dir: Path) -> Path:
    """Copy a database file (nothing else holds it open between tests) into ``dest_dir``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    shutil.copy2(src, dest)
    return dest


@pytest.fixture(scope="session")
def filled_warehouse(tmp_path_factory, ravdess_dir, tiny_hubert_dir, tiny_superb_dir,
                     tiny_whisper_path) -> FilledWarehouse:
    import warehouse
    from pipeline.analyze import Analyzer, settings_key
    from pipeline.audio import file_sha256
    from pipeline.config import Config

    root = tmp_path_factory.mktemp("filled_warehouse")
    corpus = root / "corpus"
    db = root / "filled.duckdb"
    base = Config().replace(device="cpu", whisper_model="none", beam_size=1, explain="fast",
                            faithfulness_sample=1.0, db=str(db), data_dir=str(root / "data"))
    configs = {
        "seed": base.replace(emotion_model=str(tiny_hubert_dir)),
        "superb": base.replace(emotion_model=str(tiny_superb_dir)),
    }
    analyzers = {key: Analyzer(cfg) for key, cfg in configs.items()}
    transcriber = Analyzer(configs["seed"].replace(whisper_model=str(tiny_whisper_path), language="en"))
    transcriber.emotion_model = analyzers["seed"].emotion()  # share the loaded emotion model

    store = warehouse.Warehouse(db)
    run_id = store.start_run(base.to_json())
    files: dict[str, Path] = {}
    models: dict[str, str] = {}
    for actor, name, key, transcribe in CLIPS:
        dest = corpus / actor / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ravdess_dir / actor / name, dest)
        result = (transcriber if transcribe else analyzers[key]).analyze_file(dest)
        store.write_result(dest, file_sha256(dest), result, settings_key=settings_key(result.settings), run_id=run_id)
        files[name] = dest
        models[key] = result.models.emotion
    conversation = write_conversation(ravdess_dir, corpus / "Actor_04" / CONVERSATION_NAME)
    result = analyzers["seed"].analyze_file(conversation)
    store.write_result(conversation, file_sha256(conversation), result, settings_key=settings_key(result.settings),
                       run_id=run_id)
    files[CONVERSATION_NAME] = conversation
    failed = corpus / "Actor_02" / FAILED_NAME
    failed.write_text("these are meeting notes, not a recording\n")
    store.write_failed(failed, file_sha256(failed), FAILED_REASON, run_id=run_id, error_type="AudioError")
    store.finish_run(run_id, "completed")
    return FilledWarehouse(db=db, corpus=corpus, config=configs["seed"], files=files, failed=failed,
                           run_id=run_id, models=models)


@pytest.fixture
def empty_warehouse(tmp_path) -> Path:
    """A new, empty database file (schema only)."""
    import warehouse

    return warehouse.ensure_database(tmp_path / "empty.duckdb")
