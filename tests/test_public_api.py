"""The public surface: what callers import from ``pipeline`` and ``warehouse``, and the CLI modules' layering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_pipeline_stays_light_and_every_public_name_resolves():
    got = _run(
        "import sys, pipeline\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'faster_whisper', 'av') if m in sys.modules)\n"
        "missing = [n for n in pipeline.__all__ if getattr(pipeline, n, None) is None]\n"
        "print(heavy, missing)\n"
    )
    assert got == "[] []"


def test_public_names_are_the_defining_modules_objects():
    import pipeline
    from pipeline import analyze, audio, config, emotion, runtime, transcribe

    assert pipeline.Analyzer is analyze.Analyzer and pipeline.get_analyzer is analyze.get_analyzer
    assert pipeline.decode_audio is audio.decode_audio and pipeline.Config is config.Config
    assert pipeline.load_emotion_model is emotion.load_emotion_model
    assert pipeline.load_whisper is transcribe.load_whisper and pipeline.SAMPLE_RATE == runtime.SAMPLE_RATE == 16000


def test_unknown_name_is_an_attribute_error():
    import pytest

    import pipeline

    with pytest.raises(AttributeError, match="no_such_thing"):
        pipeline.no_such_thing  # noqa: B018


def test_warehouse_exports_no_command_line_helpers():
    import warehouse

    assert not [n for n in warehouse.__all__ if n.startswith(("run_", "add_"))]
    assert not (ROOT / "warehouse" / "cli.py").exists()


def test_cli_modules_do_not_import_each_other():
    """flows.cli -> flows.commands -> flows.cli_common, never back: either can be imported first."""
    for first in ("flows.commands", "flows.cli"):
        assert _run(f"import {first}, sys; print('flows.cli' in sys.modules)") == str(first == "flows.cli")
    commands_src = (ROOT / "flows" / "commands.py").read_text()
    assert "flows.cli " not in commands_src and "from flows.cli import" not in commands_src
