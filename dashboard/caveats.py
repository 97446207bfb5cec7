"""What every page and report says about the emotion model and the intended use (plain text, no Streamlit).

The File, Explain, Live and Overview pages and every PDF report carry the same two notices: what the
emotion model that produced the results is (trained on what, how well it does on speakers it never
heard) and the intended-use / consent notice of the README. Pages draw them with
``dashboard.views.common.caveats``; reports write them with ``dashboard.report``.
"""

from __future__ import annotations

from pathlib import Path

#: The README's "Intended use" in brief.
INTENDED_USE = (
    "Intended use: EmotiVoice estimates the emotion a voice expresses, as a research and analysis aid. It is not a "
    "lie detector, not a diagnostic tool and not a basis for decisions about individuals. Emotion recognition on "
    "people is restricted by law in several places (the EU AI Act prohibits it at work and in education); use it "
    "only with a legal basis and the consent of the people recorded."
)

#: The checkpoint ``emotion_model = "auto"`` prefers, and what its public evaluation says.
SUPERB_ER = "superb/hubert-base-superb-er"
SUPERB_CAVEAT = (
    "The emotion model superb/hubert-base-superb-er is HuBERT base fine-tuned on IEMOCAP (acted English "
    "dialogue) for 4 classes (neutral, happiness, anger, sadness: fear and surprise are absent); the SUPERB "
    "benchmark reports 65 % accuracy on IEMOCAP sessions it was not trained on (chance 25 %). Expect less on "
    "spontaneous, telephone or non-English speech; voice is not felt emotion."
)
UNTRAINED_CAVEAT = (
    "The emotion model {model} is untrained (random weights, for testing the pipeline): its scores are model "
    "outputs, not emotions."
)
UNKNOWN_CAVEAT = (
    "The emotion model {model} is not one EmotiVoice ships or knows: what it was trained on and how well it does "
    "on speakers it never heard are not recorded here. Read its model card before trusting its scores; voice is "
    "not felt emotion."
)


def model_caveat(model: str | None, trained: bool = True) -> str:
    """One paragraph on the emotion model ``model`` (as stored in ``files.emotion_model``)."""
    name = str(model) if model else "(not recorded)"
    if not trained:
        return UNTRAINED_CAVEAT.format(model=name)
    if name == "compact" or _is_compact_dir(name):
        from pipeline.compact import card_summary

        summary = card_summary()
        if summary:
            return summary
    if name == "whisper-head":
        from pipeline.whisper_emotion import card_summary as head_summary

        summary = head_summary()
        if summary:
            return summary
    if name.rstrip("/") == SUPERB_ER or Path(name).name == SUPERB_ER.rsplit("/", 1)[-1]:
        return SUPERB_CAVEAT
    return UNKNOWN_CAVEAT.format(model=name)


def _is_compact_dir(name: str) -> bool:
    try:
        from pipeline.compact import COMPACT_DIR

        return Path(name).expanduser().resolve() == COMPACT_DIR.resolve()
    except (OSError, ImportError):
        return False


def model_caveats(models: list[tuple[str | None, bool]]) -> list[str]:
    """``model_caveat`` of each distinct (model, trained) pair, in order."""
    seen: list[tuple[str | None, bool]] = []
    for m in models:
        if m not in seen:
            seen.append(m)
    return [model_caveat(model, trained) for model, trained in seen]


__all__ = ["INTENDED_USE", "model_caveat", "model_caveats"]
