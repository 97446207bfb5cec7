"""Labelled manifests: ``path,label[,speaker]`` CSVs -> :class:`LabelledSet`.

Labels map onto the six canonical emotions (``pipeline.taxonomy.to_canonical``). Several manifests
(``emotivoice train --manifest A.csv --manifest B.csv``) become one set: each manifest's paths are
relative to its own data folder (``--data`` given once applies to every manifest, given as often as
``--manifest`` it pairs with them in order), and speakers of different manifests are kept apart
(``<manifest stem>:<speaker>``): actor '1' of one corpus is not actor '1' of another, so
speaker-independent validation never splits one real person across sets by accident of numbering.
Only use corpora whose licence allows training (and note it with the model).
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pipeline.taxonomy import to_canonical

log = logging.getLogger(__name__)

#: Fallback column names (the RAVDESS manifest has ``emotion`` and ``actor``).
LABEL_FALLBACKS = ("label", "emotion")
SPEAKER_FALLBACKS = ("speaker", "actor")


@dataclass
class LabelledSet:
    """Labelled clips read from a manifest.

    Attributes:
        paths: absolute audio paths.
        labels: training labels (canonical emotions, or auxiliary labels when asked for).
        speakers: speaker ids as strings ("" when the manifest has no speaker column).
        skipped: original label -> number of rows skipped because it maps onto no class.
        label_column / speaker_column: the manifest columns used (speaker_column None when absent).
    """

    paths: list[str]
    labels: list[str]
    speakers: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    label_column: str = "label"
    speaker_column: str | None = "speaker"

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx: Sequence[int]) -> "LabelledSet":
        return LabelledSet([self.paths[i] for i in idx], [self.labels[i] for i in idx],
                           [self.speakers[i] for i in idx], dict(self.skipped), self.label_column,
                           self.speaker_column)

    def speaker_set(self) -> list[str]:
        return sorted(set(self.speakers), key=speaker_key)


def speaker_key(s: str) -> tuple[int, Any]:
    try:
        return (0, float(s))
    except ValueError:
        return (1, s)


def norm_speaker(value: str) -> str:
    """'01' and '1' name the same actor."""
    v = str(value).strip()
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() else v
    except ValueError:
        return v


def read_manifest(data_dir: str | os.PathLike, manifest: str | os.PathLike, *,
                  label_column: str | None = None, speaker_column: str | None = None,
                  label_map: dict[str, str] | None = None,
                  extra_labels: Sequence[str] = ()) -> LabelledSet:
    """Read a ``path,label[,speaker]`` CSV (paths relative to ``data_dir``).

    Labels map onto the six canonical emotions with ``pipeline.taxonomy.to_canonical``; ``label_map``
    (lower-case original -> canonical) is applied first (e.g. ``{'calm': 'neutral'}``); labels listed in
    ``extra_labels`` are kept as they are (auxiliary training classes); other rows are skipped and counted.

    Args:
        label_column: default 'label', falling back to 'emotion' when there is no 'label' column.
        speaker_column: default 'speaker', falling back to 'actor'; without either, speakers are "".

    Raises:
        FileNotFoundError: the manifest does not exist.
        ValueError: the manifest lacks a path or label column, naming the columns it has.
    """
    mpath = Path(manifest)
    if not mpath.is_file():
        raise FileNotFoundError(f"manifest {mpath} does not exist")
    root = Path(data_dir)
    with open(mpath, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "") for k, v in row.items()} for row in reader]
    if "path" not in cols:
        raise ValueError(f"manifest {mpath}: no 'path' column (columns: {', '.join(cols)})")
    lab_col = _pick_column(cols, label_column, LABEL_FALLBACKS)
    if lab_col is None:
        raise ValueError(f"manifest {mpath}: no label column {label_column or 'label'!r} "
                         f"(columns: {', '.join(cols)}; use --label-column)")
    spk_col = _pick_column(cols, speaker_column, SPEAKER_FALLBACKS)
    if speaker_column and spk_col is None:
        raise ValueError(f"manifest {mpath}: no speaker column {speaker_column!r} (columns: {', '.join(cols)})")
    lmap = {k.lower(): v for k, v in (label_map or {}).items()}
    extras = {e.lower() for e in extra_labels}
    out = LabelledSet([], [], [], {}, lab_col, spk_col)
    for row in rows:
        raw = row[lab_col].strip()
        key = raw.lower()
        label = to_canonical(lmap.get(key, key))
        if label is None and key in extras:
            label = key
        if label is None:
            out.skipped[raw] = out.skipped.get(raw, 0) + 1
            continue
        out.paths.append(str(root / row["path"].strip()))
        out.labels.append(label)
        out.speakers.append(norm_speaker(row[spk_col]) if spk_col else "")
    if out.skipped:
        log.info("manifest %s: skipped %d rows with labels outside the classes: %s", mpath,
                 sum(out.skipped.values()), dict(sorted(out.skipped.items())))
    return out


def _pick_column(cols: list[str], wanted: str | None, fallbacks: Sequence[str]) -> str | None:
    if wanted:
        return wanted if wanted in cols else None
    return next((c for c in fallbacks if c in cols), None)



def pair_manifests(data_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                   manifests: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[str, str]]:
    """(data folder, manifest) pairs; raises ValueError when the counts cannot be paired."""
    datas = [data_dirs] if isinstance(data_dirs, (str, os.PathLike)) else list(data_dirs)
    mans = [manifests] if isinstance(manifests, (str, os.PathLike)) else list(manifests)
    if not mans:
        raise ValueError("no --manifest given")
    if len(datas) == 1:
        datas = datas * len(mans)
    if len(datas) != len(mans):
        raise ValueError(f"{len(mans)} --manifest and {len(datas)} --data: give --data once (shared) or once "
                         "per manifest, in the same order")
    return [(str(d), str(m)) for d, m in zip(datas, mans)]


def read_manifests(data_dirs, manifests, **kw) -> LabelledSet:
    """``read_manifest`` of each (data folder, manifest) pair, concatenated.

    With one manifest this is ``read_manifest`` itself (speaker ids unchanged). With several, speaker
    ids are prefixed by the manifest's file stem (or its parent folder's name when stems repeat).
    ``kw`` goes to every ``read_manifest`` call (label_column, speaker_column, label_map, extra_labels).
    """
    pairs = pair_manifests(data_dirs, manifests)
    if len(pairs) == 1:
        return read_manifest(pairs[0][0], pairs[0][1], **kw)
    stems = [Path(m).stem for _, m in pairs]
    if len(set(stems)) < len(stems):
        stems = [f"{Path(m).parent.name}/{Path(m).stem}" for _, m in pairs]
    if len(set(stems)) < len(stems):
        stems = [f"{i + 1}" for i in range(len(pairs))]
    out: LabelledSet | None = None
    for (data_dir, manifest), stem in zip(pairs, stems):
        part = read_manifest(data_dir, manifest, **kw)
        part.speakers = [f"{stem}:{s}" for s in part.speakers]
        if out is None:
            out = part
            continue
        out.paths += part.paths
        out.labels += part.labels
        out.speakers += part.speakers
        for k, v in part.skipped.items():
            out.skipped[k] = out.skipped.get(k, 0) + v
    assert out is not None
    return out
