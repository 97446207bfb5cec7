"""Several labelled manifests as one training set (``emotivoice train --manifest A.csv --manifest B.csv``).

Each manifest's paths are relative to its own data folder: ``--data`` given once applies to every
manifest, given as often as ``--manifest`` it pairs with them in order. Speakers of different manifests
are kept apart (``<manifest stem>:<speaker>``): actor '1' of one corpus is not actor '1' of another, so
speaker-independent validation never splits one real person across sets by accident of numbering.
Only use corpora whose licence allows training (and note it with the model).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from pipeline.train import LabelledSet, read_manifest


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
