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
SHARED = ROOT.parent / "shared" / "datasets"

pytest_plugins = [
    "tests.fixtures_audio",
    "tests.fixtures_models",
    "tests.fixtures_whisper",
    "tests.fixtures_warehouse_data",
]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared datasets not found at {SHARED} (tests need ../shared/datasets beside the project)")
    return SHARED


@pytest.fixture(scope="session")
def ravdess_dir(shared_datasets) -> Path:
    return shared_datasets / "ravdess"


@pytest.fixture(scope="session")
def speech_dir(shared_datasets) -> Path:
    return shared_datasets / "speech"
