"""Where the tests' real recordings come from (a pytest plugin, registered in tests/conftest.py).

The full corpora in ``../shared/datasets`` beside the project when that folder exists (as in CI), else
the small subset shipped in ``tests/data`` (110 RAVDESS clips, three read-speech files: see
tests/data/README.md), so that the suite runs on a plain clone. ``EMOTIVOICE_TEST_DATASETS`` names
another folder laid out the same way (``ravdess/``, ``speech/``, each with ``manifest.csv``); set it to
``tests/data`` to run as on a plain clone while ``../shared`` exists.

Tests read only clips present in both. A figure that depends on how much of the corpus is present (a
number of clips) is counted from the manifest in use with :func:`manifest_emotions`, never assumed.

Fixtures (session):
    datasets_root: the folder in use.
    ravdess_dir, speech_dir: its ``ravdess/`` and ``speech/`` folders.
    ravdess_manifest_full: the 1080-row RAVDESS manifest (``ravdess/manifest.csv`` of the full corpus,
        else its copy shipped as text in tests/data): for tests of manifest logic only (label counts,
        validation plans); in a plain clone the audio of most rows is absent.
    full_ravdess_dir: the whole RAVDESS corpus; skips with a reason where it is absent.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The full corpora, beside the project (read-only).
SHARED = ROOT.parent / "shared" / "datasets"
#: The subset shipped with the project.
BUNDLED = ROOT / "tests" / "data"
FULL_MANIFEST = BUNDLED / "ravdess_full_manifest.csv"
#: RAVDESS labels that map onto the project's six base emotions (calm and disgust do not).
RAVDESS_SIX = ("neutral", "happy", "sad", "angry", "fearful", "surprised")
NEEDS_FULL = "needs the full RAVDESS corpus at ../shared/datasets (not in a plain clone)"


def datasets_path() -> Path:
    """The datasets folder the tests read: ``$EMOTIVOICE_TEST_DATASETS``, ``../shared/datasets``, tests/data."""
    env = os.environ.get("EMOTIVOICE_TEST_DATASETS")
    if env:
        path = Path(env)
        return path if path.is_absolute() else (ROOT / path)
    return SHARED if SHARED.is_dir() else BUNDLED


def is_full_corpus(root: Path) -> bool:
    """True when ``root/ravdess`` holds every clip its manifest lists (the whole corpus)."""
    manifest = root / "ravdess" / "manifest.csv"
    if root.resolve() == BUNDLED.resolve() or not manifest.is_file():
        return False
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return len(rows) == 1080 and all((root / "ravdess" / r["path"]).is_file() for r in rows)


def manifest_emotions(manifest: str | os.PathLike, actors: Iterable[int] | None = None) -> Counter:
    """RAVDESS emotion -> number of rows of ``manifest`` (only those of ``actors`` when given)."""
    wanted = None if actors is None else {int(a) for a in actors}
    with open(manifest, newline="", encoding="utf-8") as fh:
        return Counter(r["emotion"] for r in csv.DictReader(fh) if wanted is None or int(r["actor"]) in wanted)


def six_count(counts: Counter) -> int:
    """How many of the counted rows carry one of the six base emotions."""
    return sum(counts[e] for e in RAVDESS_SIX)


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    root = datasets_path()
    for sub in ("ravdess", "speech"):
        if not (root / sub / "manifest.csv").is_file():
            pytest.fail(f"test recordings not found: {root / sub / 'manifest.csv'} is missing "
                        "(tests/data ships with the project; EMOTIVOICE_TEST_DATASETS may point elsewhere)")
    return root


@pytest.fixture(scope="session")
def ravdess_dir(datasets_root) -> Path:
    return datasets_root / "ravdess"


@pytest.fixture(scope="session")
def speech_dir(datasets_root) -> Path:
    return datasets_root / "speech"


@pytest.fixture(scope="session")
def ravdess_manifest_full(datasets_root) -> Path:
    full = datasets_root / "ravdess" / "manifest.csv"
    with open(full, newline="", encoding="utf-8") as fh:
        n = sum(1 for _ in csv.DictReader(fh))
    return full if n == 1080 else FULL_MANIFEST


@pytest.fixture(scope="session")
def full_ravdess_dir(datasets_root) -> Path:
    if not is_full_corpus(datasets_root):
        pytest.skip(NEEDS_FULL)
    return datasets_root / "ravdess"
