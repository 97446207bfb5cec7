"""The recordings shipped in tests/data: complete, described by their manifests, copies of the full corpora,
and what the suite reads on a plain clone (no ../shared beside the project)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import soundfile as sf

from tests import fixtures_datasets as fd

AUDIO = {".flac", ".wav", ".mp3"}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _audio_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in AUDIO}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_shipped_manifest_lists_exactly_the_shipped_recordings():
    for sub in ("ravdess", "speech"):
        folder = fd.BUNDLED / sub
        listed = [r["path"] for r in _rows(folder / "manifest.csv")]
        assert len(listed) == len(set(listed)), f"{sub}/manifest.csv lists a file twice"
        unlisted = _audio_files(folder) - set(listed)
        # As in the full speech set, the MP3 of a listed WAV is the one file the manifest leaves out.
        assert unlisted == ({"LJ001-0001.mp3"} if sub == "speech" else set()), sub
        assert set(listed) <= _audio_files(folder), sub


def test_shipped_ravdess_rows_are_rows_of_the_full_manifest_and_the_clips_are_16k_mono():
    full = _rows(fd.FULL_MANIFEST)
    assert len(full) == 1080 and len({r["actor"] for r in full}) == 18
    full_by_path = {r["path"]: r for r in full}
    for row in _rows(fd.BUNDLED / "ravdess" / "manifest.csv"):
        assert row == full_by_path[row["path"]]
        info = sf.info(str(fd.BUNDLED / "ravdess" / row["path"]))
        assert (info.samplerate, info.channels) == (16000, 1), row["path"]
        assert 2.5 < info.duration < 6.0, row["path"]


def test_a_plain_clone_reads_the_shipped_recordings_and_skips_what_needs_the_full_corpus(monkeypatch, tmp_path):
    monkeypatch.delenv("EMOTIVOICE_TEST_DATASETS", raising=False)
    monkeypatch.setattr(fd, "SHARED", tmp_path / "no_shared_here")
    assert fd.datasets_path() == fd.BUNDLED
    assert not fd.is_full_corpus(fd.BUNDLED)
    monkeypatch.setenv("EMOTIVOICE_TEST_DATASETS", "tests/data")
    assert fd.datasets_path() == fd.BUNDLED


def test_shipped_recordings_are_copies_of_the_full_corpora(shared_datasets):
    assert fd.is_full_corpus(shared_datasets)
    for sub in ("ravdess", "speech"):
        for name in sorted(_audio_files(fd.BUNDLED / sub)):
            assert _sha(fd.BUNDLED / sub / name) == _sha(shared_datasets / sub / name), f"{sub}/{name}"
    assert _rows(fd.FULL_MANIFEST) == _rows(shared_datasets / "ravdess" / "manifest.csv")
    for sub in ("ravdess", "speech"):
        full = {r["path"]: r for r in _rows(shared_datasets / sub / "manifest.csv")}
        for row in _rows(fd.BUNDLED / sub / "manifest.csv"):
            assert row == full[row["path"]], f"{sub}/{row['path']}"
