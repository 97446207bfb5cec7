"""`emotivoice analyze`: the table and JSON an analyst sees, untrained models hidden, bad files named."""

from __future__ import annotations

import json

import pytest

from flows.cli import main


@pytest.fixture
def clip(ravdess_dir):
    return sorted((ravdess_dir / "Actor_04").glob("03-01-05-*.flac"))[0]  # an angry clip


def test_analyze_prints_the_model_what_it_is_and_a_row_per_chunk(clip, capsys):
    assert main(["analyze", str(clip), "--emotion-model", "compact", "--whisper-model", "none",
                 "--explain", "none"]) == 0
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # the console wraps long lines
    assert f"{clip}" in out and "emotion model: compact" in out
    assert "balanced accuracy on actors it never heard" in flat  # what the compact model is, in a sentence
    assert "dominant" in out and any(e in out for e in ("anger", "fear", "happiness", "sadness", "surprise",
                                                        "neutral"))


def test_analyze_json_has_the_models_chunks_and_settings(clip, capsys):
    assert main(["analyze", str(clip), "--emotion-model", "compact", "--whisper-model", "none", "--json",
                 "--compact"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["models"]["emotion"] == "compact" and doc["models"]["emotion_trained"] is True
    assert doc["models"]["whisper"] is None
    assert len(doc["chunks"]) == 1
    chunk = doc["chunks"][0]
    assert set(chunk["base"]) == {"anger", "fear", "happiness", "sadness", "surprise", "neutral"}
    assert sum(chunk["base"].values()) == pytest.approx(1.0, abs=1e-4)
    assert chunk["explanation"]["shap_segments"] and doc["settings"]["quantize"] == "none"


def test_an_untrained_model_scores_are_not_shown_as_emotions(clip, tiny_hubert_dir, capsys):
    assert main(["analyze", str(clip), "--emotion-model", str(tiny_hubert_dir), "--whisper-model", "none",
                 "--explain", "none"]) == 0
    out = capsys.readouterr().out
    assert "UNTRAINED emotion model" in out
    assert "dominant" not in out and "balanced accuracy" not in out


def test_a_file_that_is_not_audio_exits_2_with_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not a recording")
    assert main(["analyze", str(bad), "--emotion-model", "compact", "--whisper-model", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emotivoice analyze:") and "notes.wav" in err[0]
