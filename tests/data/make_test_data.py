"""Rebuild tests/data from the full corpora in ../shared/datasets (run from the project root).

    python tests/data/make_test_data.py [--shared ../shared/datasets]

Copies the few clips the test suite reads (see tests/data/README.md for why each is here) byte for
byte, writes ``ravdess/manifest.csv`` and ``speech/manifest.csv`` holding only the shipped rows (same
columns as the full manifests), and copies the full RAVDESS manifest (text only) to
``ravdess_full_manifest.csv`` for the tests of manifest logic. Idempotent; removes nothing else.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Actors whose statement-1, repetition-1 clips of every emotion and intensity are shipped (15 each):
#: the training / evaluation tests train on some of them and evaluate on another.
STRUCTURED_ACTORS = (1, 2, 3, 4)
#: Actors whose every strong-intensity angry and sad clip is shipped (8 each): the HuBERT fine-tuning test
#: trains on these clips (its loss must fall in 4 steps; it did not on other actors' clips).
ANGRY_SAD_ACTORS = (9, 10)
#: actor -> number of its first clips in file-name order (tests take clips by index from a sorted listing).
FIRST_SORTED = {5: 21, 7: 4, 9: 12, 11: 4}
#: Single clips named by tests or fixtures.
NAMED = (
    "Actor_06/03-01-05-01-01-01-06.flac",  # tests/test_dashboard.py (a default ingest)
    "Actor_02/03-01-04-01-02-01-02.flac",  # filled warehouse (tests/fixtures_warehouse_data.py)
    "Actor_03/03-01-04-01-02-02-03.flac",  # tests/test_emotion.py
    "Actor_04/03-01-03-01-02-01-04.flac",  # filled warehouse's conversation
    "Actor_04/03-01-01-01-02-01-04.flac",  # filled warehouse's conversation
    "Actor_04/03-01-06-02-02-01-04.flac",  # tests/test_emotion.py
    "Actor_07/03-01-03-01-01-01-07.flac",  # ravdess_clips (one per emotion, actors 1, 4, 7, 10, 13, 16)
    "Actor_10/03-01-04-01-01-01-10.flac",
    "Actor_13/03-01-05-01-01-01-13.flac",
    "Actor_16/03-01-06-01-01-01-16.flac",
)
SPEECH = ("LJ001-0001.wav", "LJ001-0001.mp3", "jfk.flac")


def ravdess_selection(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    keep = set(NAMED)
    for r in rows:
        if int(r["actor"]) in STRUCTURED_ACTORS and r["statement"] == "1" and r["repetition"] == "1":
            keep.add(r["path"])
        if int(r["actor"]) in ANGRY_SAD_ACTORS and r["emotion"] in {"angry", "sad"} and r["intensity"] == "strong":
            keep.add(r["path"])
    for actor, n in FIRST_SORTED.items():
        keep.update(sorted(r["path"] for r in rows if int(r["actor"]) == actor)[:n])
    missing = keep - {r["path"] for r in rows}
    if missing:
        raise SystemExit(f"not in the RAVDESS manifest: {sorted(missing)}")
    return [r for r in rows if r["path"] in keep]


def _write_rows(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=HERE.parents[1].parent / "shared" / "datasets")
    args = ap.parse_args()
    src = args.shared
    with open(src / "ravdess" / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    chosen = ravdess_selection(rows)
    for r in chosen:
        dest = HERE / "ravdess" / r["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "ravdess" / r["path"], dest)
    _write_rows(HERE / "ravdess" / "manifest.csv", fields, chosen)
    shutil.copyfile(src / "ravdess" / "manifest.csv", HERE / "ravdess_full_manifest.csv")

    with open(src / "speech" / "manifest.csv", newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        sfields, srows = list(reader.fieldnames or []), list(reader)
    (HERE / "speech").mkdir(exist_ok=True)
    for name in SPEECH:
        shutil.copyfile(src / "speech" / name, HERE / "speech" / name)
    # Rows of the shipped files; like the full manifest, it lists LJ001-0001.wav but not its MP3.
    speech_rows = [r for r in srows if r["path"] in SPEECH]
    _write_rows(HERE / "speech" / "manifest.csv", sfields, speech_rows)
    print(f"{len(chosen)} RAVDESS clips, {len(SPEECH)} speech files written under {HERE}")


if __name__ == "__main__":
    main()
