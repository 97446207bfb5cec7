"""The one configuration object: defaults, TOML, environment, overrides, clear errors."""

import pytest

from pipeline.config import Config, load_config


def test_defaults_need_no_file_or_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(env={})
    assert cfg == Config()
    assert cfg.db == "emotivoice.duckdb"
    assert cfg.explain == "fast"


def test_toml_sections_and_flat_keys_are_read(tmp_path):
    f = tmp_path / "ev.toml"
    f.write_text('emotion_model = "compact"\n[chunking]\nmax_chunk_s = 12.5\n[paths]\ncorpus_roots = ["/a", "/b"]\n')
    cfg = load_config(f, env={})
    assert cfg.emotion_model == "compact"
    assert cfg.max_chunk_s == 12.5
    assert cfg.corpus_roots == ("/a", "/b")


def test_environment_overrides_toml_and_flags_override_environment(tmp_path):
    f = tmp_path / "ev.toml"
    f.write_text('db = "from-toml.duckdb"\nworkers = 3\n')
    env = {"EMOTIVOICE_DB": "from-env.duckdb", "EMOTIVOICE_WORKERS": "4", "EMOTIVOICE_ICE_SERVERS": "stun:a, turn:b"}
    cfg = load_config(f, env=env)
    assert (cfg.db, cfg.workers, cfg.ice_servers) == ("from-env.duckdb", 4, ("stun:a", "turn:b"))
    cfg = load_config(f, env=env, db="flag.duckdb", workers=None)
    assert (cfg.db, cfg.workers) == ("flag.duckdb", 4)


def test_config_file_named_in_environment_is_used(tmp_path):
    f = tmp_path / "other.toml"
    f.write_text('whisper_model = "none"\n')
    assert load_config(env={"EMOTIVOICE_CONFIG": str(f)}).whisper_model == "none"


def test_unknown_option_is_named(tmp_path):
    f = tmp_path / "ev.toml"
    f.write_text('emotion_modle = "compact"\n')
    with pytest.raises(ValueError, match="emotion_modle"):
        load_config(f, env={})


def test_wrong_type_is_named():
    with pytest.raises(ValueError, match="workers"):
        load_config(env={"EMOTIVOICE_WORKERS": "many"})


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_config(tmp_path / "nope.toml", env={})


def test_json_round_trip_keeps_every_field():
    cfg = Config().replace(corpus_roots=("/x",), language="de")
    import json

    data = json.loads(cfg.to_json())
    again = Config().replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    assert again == cfg


def test_each_section_reads_its_own_table_and_environment(tmp_path):
    from pipeline.config import SECTIONS, Live, Sql

    f = tmp_path / "ev.toml"
    f.write_text('[live]\nlive_queue_size = 9\n[sql]\nsql_max_rows = 7\n')
    env = {"EMOTIVOICE_SQL_MAX_MB": "5"}
    cfg = load_config(f, env=env)
    assert cfg.section(Live) == Live(live_queue_size=9)
    assert cfg.section(Sql) == Sql(sql_max_rows=7, sql_max_mb=5)
    # every field of Config belongs to exactly one section, and a section alone has no other field
    owned = [name for section in SECTIONS for name in section.names()]
    assert sorted(owned) == sorted(cfg.to_dict()) and len(owned) == len(set(owned))


def test_option_under_another_table_is_read_with_a_warning(tmp_path, caplog):
    f = tmp_path / "ev.toml"
    f.write_text('[models]\nmax_chunk_s = 12.0\n')
    with caplog.at_level("WARNING", logger="pipeline.config"):
        cfg = load_config(f, env={})
    assert cfg.max_chunk_s == 12.0
    assert "max_chunk_s" in caplog.text and "[chunking]" in caplog.text


def test_unknown_option_inside_a_table_is_named(tmp_path):
    f = tmp_path / "ev.toml"
    f.write_text('[chunking]\nmax_chunk = 12.0\n')
    with pytest.raises(ValueError, match="max_chunk"):
        load_config(f, env={})
