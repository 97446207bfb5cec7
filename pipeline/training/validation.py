"""Speaker-independent validation: which speakers each member holds out, and the best checkpoint by
validation UAR (a speaker's clips are never split between training and validation)."""

from __future__ import annotations

import random
from typing import Sequence

from pipeline.training.manifests import LabelledSet, norm_speaker, speaker_key


def speaker_groups(speakers: Sequence[str], n_groups: int, seed: int) -> list[list[str]]:
    """Split speakers into ``n_groups`` disjoint groups (seeded shuffle, round robin)."""
    spk = sorted(set(speakers), key=speaker_key)
    rng = random.Random(seed)
    rng.shuffle(spk)
    groups = [sorted(spk[i::n_groups], key=speaker_key) for i in range(n_groups)]
    return [g for g in groups if g]


def plan_validation(data: LabelledSet, val_speakers: Sequence[str] | str | None, n_members: int,
                    seed: int, val_group_size: int = 3) -> list[list[str]]:
    """Validation speakers for each member.

    ``None``/'auto': the speakers are split into groups of about ``val_group_size`` (at least 2 groups)
    and member i holds out group i (cycling), so with several members the ensemble as a whole learns
    from every speaker; 'none': no validation (fixed epochs); a list: every member validates on those
    speakers.

    Raises:
        ValueError: named speakers that are not in the data, or too few speakers to hold any out.
    """
    speakers = data.speaker_set()
    if isinstance(val_speakers, str):
        if val_speakers.lower() == "none":
            return [[] for _ in range(n_members)]
        if val_speakers.lower() != "auto":
            val_speakers = [s for s in val_speakers.split(",") if s.strip()]
        else:
            val_speakers = None
    if val_speakers is not None:
        wanted = [norm_speaker(s) for s in val_speakers]
        missing = [s for s in wanted if s not in speakers]
        if missing:
            raise ValueError(f"validation speakers {missing} are not in the manifest (speakers: {speakers})")
        if len(set(wanted)) >= len(speakers):
            raise ValueError("validation speakers cover every speaker: nothing left to train on")
        return [sorted(set(wanted), key=speaker_key) for _ in range(n_members)]
    if len(speakers) < 2:
        raise ValueError("speaker-independent validation needs at least 2 speakers "
                         "(add a speaker column, or pass --val-speakers none)")
    n_groups = max(2, round(len(speakers) / max(1, val_group_size)))
    groups = speaker_groups(speakers, min(n_groups, len(speakers)), seed)
    return [groups[i % len(groups)] for i in range(n_members)]


class BestCheckpoint:
    """Keeps the state of the best validation UAR so far (the latest one when there is no validation) and
    says when ``patience`` checkpoints have passed without a better one."""

    def __init__(self, patience: int | None):
        self.patience = patience
        self.uar: float | None = None
        self.index = 0
        self.state: dict | None = None
        self._since = 0

    def update(self, index: int, uar: float | None, module) -> bool:
        """Record checkpoint ``index``; True when training should stop early."""
        if uar is None or self.uar is None or uar > self.uar:
            self.uar, self.index, self._since = uar, index, 0
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            return False
        self._since += 1
        return self.patience is not None and self._since >= self.patience
