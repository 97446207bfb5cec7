"""Shared fixtures. Fixture modules per concern live in tests/fixtures_*.py and are registered here."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = [
    "tests.fixtures_datasets",
    "tests.fixtures_audio",
    "tests.fixtures_models",
    "tests.fixtures_whisper",
    "tests.fixtures_warehouse_data",
]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The full corpora at ../shared/datasets; skips where they are absent (a plain clone).

    Most tests want ``ravdess_dir`` / ``speech_dir`` instead (tests/fixtures_datasets.py): those fall
    back to the clips shipped in tests/data.
    """
    from tests.fixtures_datasets import SHARED

    if not SHARED.is_dir():
        pytest.skip(f"needs the full datasets at ../shared/datasets (not in a plain clone): {SHARED} is absent")
    return SHARED
