"""pipeline.model_cache: one loaded copy of each model per process, whatever the chunking or explanation
settings of the runs a long-lived worker sees; at most ``model_cache_size`` model sets; loads once when
threads ask together."""

from __future__ import annotations

import gc
import shutil
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from pipeline import analyze, emotion
from pipeline.analyze import get_analyzer
from pipeline.config import Config
from pipeline.emotion import HFEmotionModel, clear_model_cache
from pipeline.model_cache import MODEL_SETS, model_key

#: Six runs' configurations that differ in what they do with the models, not in which models they load.
RUN_VARIANTS = [
    dict(),
    dict(min_chunk_s=0.5, max_chunk_s=10.0),
    dict(chunker="energy", silence_threshold_db=-30.0),
    dict(explain="none"),
    dict(explain="full", beam_size=5),
    dict(language="en", speakers="none", min_silence_ms=300),
]


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_model_cache()
    analyze._ANALYZERS.clear()
    yield
    clear_model_cache()
    analyze._ANALYZERS.clear()


@pytest.fixture
def model_dir(tiny_hubert_dir, tmp_path) -> Path:
    """A copy of the tiny HuBERT under a path of this test's own, so models are counted by name."""
    return Path(shutil.copytree(tiny_hubert_dir, tmp_path / "tiny_hubert"))


def base_config(model_dir: Path, **kw) -> Config:
    return Config(emotion_model=str(model_dir), whisper_model="none", device="cpu", quantize="none",
                  model_cache_size=2).replace(**kw)


def live_models(name: str) -> list[HFEmotionModel]:
    gc.collect()
    return [o for o in gc.get_objects() if type(o) is HFEmotionModel and o.name == name]  # not proxies


@pytest.fixture
def count_loads(monkeypatch) -> list[str]:
    """Each real checkpoint load appends its spec (slowed down, so concurrent callers overlap)."""
    loads: list[str] = []
    real = emotion._load_transformers

    def counting(spec, device, quantize):
        loads.append(spec)
        time.sleep(0.3)
        return real(spec, device, quantize)

    monkeypatch.setattr(emotion, "_load_transformers", counting)
    return loads


def test_runs_differing_in_chunking_and_explanations_share_one_loaded_model(model_dir, count_loads):
    configs = [base_config(model_dir, **kw) for kw in RUN_VARIANTS]
    analyzers = [get_analyzer(c) for c in configs]
    assert len({id(a) for a in analyzers}) == len(RUN_VARIANTS)  # one Analyzer per configuration...
    models = [a.emotion() for a in analyzers]
    assert all(m is models[0] for m in models)  # ...one model for all of them
    assert count_loads == [str(model_dir)]
    assert len(live_models(str(model_dir))) == 1
    assert len(MODEL_SETS) == 1
    # they still run, each with its own settings, on the shared model
    signal = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    results = [a.analyze_signal(signal, one_chunk=True) for a in analyzers[:2]]
    assert all(r.models.emotion == str(model_dir) and len(r.chunks) == 1 for r in results)
    assert analyzers[0].settings() != analyzers[1].settings()
    assert count_loads == [str(model_dir)] and len(live_models(str(model_dir))) == 1


def test_model_sets_beyond_the_bound_drop_the_least_recently_used(model_dir, tiny_superb_dir,
                                                                   tiny_extra_label_dir, count_loads):
    first, second, third = (base_config(model_dir), base_config(tiny_superb_dir, explain="none"),
                            base_config(tiny_extra_label_dir, chunker="energy"))
    reused = weakref.ref(get_analyzer(first).emotion())
    dropped = weakref.ref(get_analyzer(second).emotion())
    gc.collect()
    assert reused() is not None and dropped() is not None  # two sets fit model_cache_size=2
    assert get_analyzer(first).emotion() is reused()  # and are reused: no reload
    get_analyzer(third).emotion()  # three sets: 'second' is now the least recently used
    gc.collect()
    assert dropped() is None, "the dropped set's model is still referenced somewhere"
    assert reused() is not None and len(MODEL_SETS) == 2
    assert get_analyzer(second).emotion().name == str(tiny_superb_dir)  # comes back on demand, reloaded
    assert count_loads == [str(model_dir), str(tiny_superb_dir), str(tiny_extra_label_dir), str(tiny_superb_dir)]


def test_a_bound_of_one_holds_one_set(model_dir, tiny_superb_dir):
    a = weakref.ref(get_analyzer(base_config(model_dir, model_cache_size=1)).emotion())
    get_analyzer(base_config(tiny_superb_dir, model_cache_size=1)).emotion()
    gc.collect()
    assert a() is None and len(MODEL_SETS) == 1


def test_concurrent_first_calls_load_once(model_dir, count_loads):
    configs = [base_config(model_dir, **kw) for kw in RUN_VARIANTS] * 2
    barrier = threading.Barrier(len(configs))
    got: list = []
    errors: list = []

    def first_call(config: Config) -> None:
        try:
            barrier.wait(timeout=30)
            got.append(get_analyzer(config).emotion())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_call, args=(c,)) for c in configs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert len(got) == len(configs) and all(m is got[0] for m in got)
    assert count_loads == [str(model_dir)]
    assert len(live_models(str(model_dir))) == 1


def test_only_model_settings_key_the_cache(model_dir, tmp_path):
    base = base_config(model_dir)
    same = [base.replace(**kw) for kw in RUN_VARIANTS] + [
        base.replace(batch_size=2, live_beam_size=3, max_speakers=4, speaker_threshold=0.5),
    ]
    assert {model_key(c) for c in same} == {model_key(base)}
    compact = base.replace(emotion_model="compact")  # with Whisper off, no weights folder matters to it
    assert model_key(compact.replace(data_dir=str(tmp_path / "d"), whisper_dir=str(tmp_path / "w"))) == \
        model_key(compact)
    different = [base.replace(quantize="int8"), base.replace(device="cuda"),
                 base.replace(emotion_model="compact"), base.replace(whisper_model="tiny"),
                 base.replace(emotion_model="auto"), base.replace(emotion_model="auto", hubert_checkpoint="x/y")]
    keys = {model_key(c) for c in different}
    assert len(keys) == len(different) and model_key(base) not in keys
    whisper_on = base.replace(whisper_model="auto")
    for kw in (dict(whisper_dir=str(tmp_path / "w")), dict(data_dir=str(tmp_path / "d")),
               dict(whisper_compute_type="float32"), dict(whisper_threads=3)):
        assert model_key(whisper_on.replace(**kw)) != model_key(whisper_on), kw
    assert model_key(whisper_on.replace(beam_size=1, language="de")) == model_key(whisper_on)


def test_whisper_is_shared_across_decoding_settings(model_dir, tiny_whisper_path):
    a = get_analyzer(base_config(model_dir, whisper_model=str(tiny_whisper_path), beam_size=5))
    b = get_analyzer(base_config(model_dir, whisper_model=str(tiny_whisper_path), beam_size=1, language="en"))
    assert not a._whisper_loaded and a.whisper_name is None  # nothing loads before it is asked for
    assert a.whisper() is b.whisper() is not None
    assert b._whisper_loaded and a.whisper_name == b.whisper_name == str(tiny_whisper_path)
    assert a.model_info().whisper == str(tiny_whisper_path)


def test_analyzers_per_configuration_are_bounded(model_dir):
    configs = [base_config(model_dir, min_chunk_s=0.1 * i) for i in range(analyze.ANALYZER_CACHE_SIZE + 4)]
    first = get_analyzer(configs[0])
    for c in configs[1:]:
        get_analyzer(c)
    assert len(analyze._ANALYZERS) == analyze.ANALYZER_CACHE_SIZE
    assert get_analyzer(configs[-1]) is get_analyzer(configs[-1])
    assert get_analyzer(configs[0]) is not first  # the oldest was dropped, a new one made


def test_a_pinned_emotion_model_is_used_by_that_analyzer_only(model_dir, tiny_superb_dir):
    analyzer = analyze.Analyzer(base_config(model_dir))
    other = get_analyzer(base_config(tiny_superb_dir)).emotion()
    analyzer.emotion_model = other
    assert analyzer.emotion() is other and analyzer.model_info().emotion == str(tiny_superb_dir)
    assert get_analyzer(base_config(model_dir)).emotion().name == str(model_dir)
