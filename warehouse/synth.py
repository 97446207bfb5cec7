"""Fabricated data for tests, benchmarks and dashboard load checks. Never real emotions.

``fake_file_result`` builds a complete ``FileResult`` (every table gets rows) from a seed;
``synthesize_database`` fills a database with many chunks directly in SQL (a million in seconds).
Both mark their output as produced by the model 'synthetic' and, unless told otherwise, as
``emotion_trained = False``, so nothing downstream presents the numbers as emotions.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.types import (
    BASE_EMOTIONS,
    ChunkResult,
    Explanation,
    FileResult,
    ModelInfo,
    SegmentWeight,
    Word,
)

SYNTHETIC_MODEL = "synthetic"
_VOCAB = ("we", "need", "the", "report", "today", "thanks", "really", "why", "never", "again", "great",
          "call", "me", "back", "sorry", "no", "yes", "please", "wait", "listen")
_FEATURES = ("pitch_mean_hz", "pitch_std_hz", "rms_db", "zcr", "spectral_centroid_hz", "jitter",
             "shimmer", "hnr_db", "speech_rate_sps", "mfcc1")


def fake_file_result(seed: int, path: str = "/data/fake.wav", *, n_chunks: int = 4, explain: bool = True,
                     attention: bool = True, trained: bool = False, absent: tuple[str, ...] = (),
                     extra: tuple[str, ...] = (), chunk_s: float = 2.0, n_segments: int = 6,
                     settings: dict | None = None) -> FileResult:
    """A deterministic, fully populated FileResult (random numbers, real taxonomy rules).

    Args:
        seed: everything derives from it.
        path: ``FileResult.file``.
        n_chunks: chunks of ``chunk_s`` seconds each.
        explain / attention: include an Explanation (with attention maps) per chunk.
        trained: what ``ModelInfo.emotion_trained`` claims (default False: outputs are not emotions).
        absent: base labels the fake model lacks (None in ``base``).
        extra: labels outside the six (reported in ``extra``).
    """
    from pipeline.taxonomy import complex_emotions, dominant_emotion, granular_emotions

    rng = np.random.default_rng(seed)
    present = [e for e in BASE_EMOTIONS if e not in absent]
    labels = tuple(present) + tuple(extra)
    chunks: list[ChunkResult] = []
    for i in range(n_chunks):
        p = rng.dirichlet(np.full(len(labels), 0.7))
        probs = dict(zip(labels, map(float, p)))
        base = {e: probs.get(e) for e in BASE_EMOTIONS}
        start = i * chunk_s
        n_words = int(rng.integers(2, 7))
        text_words = [str(w) for w in rng.choice(_VOCAB, size=n_words)]
        step = chunk_s / n_words
        words = [Word(w, start + k * step, start + (k + 1) * step, float(rng.uniform(0.5, 1.0)))
                 for k, w in enumerate(text_words)]
        ex = None
        if explain:
            target = dominant_emotion(base) or labels[0]
            seg_len = chunk_s / n_segments
            shap_vals = rng.normal(0, 0.05, n_segments)
            base_value = float(rng.uniform(0.1, 0.3))
            n_att = 8
            att = rng.random((2, n_att, n_att)).astype(np.float32) if attention else None
            if att is not None:
                att /= att.sum(-1, keepdims=True)
            ex = Explanation(
                target_label=target, tier="fast", shap_method="exact Shapley (pooled head)",
                shap_segments=[SegmentWeight(k, k * seg_len, (k + 1) * seg_len, float(v))
                               for k, v in enumerate(shap_vals)],
                shap_base_value=base_value, shap_full_value=base_value + float(shap_vals.sum()),
                lime_method="LIME (ridge, 64 samples)",
                lime_segments=[SegmentWeight(k, k * seg_len, (k + 1) * seg_len, float(rng.normal(0, 0.05)))
                               for k in range(n_segments)],
                lime_score=float(rng.uniform(0.3, 0.9)),
                shap_features={f: float(rng.normal(0, 0.02)) for f in _FEATURES[:5]},
                shap_features_method="TreeSHAP on a surrogate", surrogate_r2=float(rng.uniform(0.2, 0.9)),
                attention=att, attention_rollout=att.mean(0) if att is not None else None,
                attention_note=None if attention else "model has no attention",
                faithfulness={"aopc_top": float(rng.uniform(0, 0.2)), "aopc_random": float(rng.uniform(0, 0.1)), "k": 3.0}
                if i % 2 == 0 else None,
            )
        chunks.append(ChunkResult(
            idx=i, start_s=start, end_s=start + chunk_s, base=base, dominant=dominant_emotion(base),
            granular=granular_emotions(base), complex=complex_emotions(base),
            extra={x: probs[x] for x in extra},
            transcript=" ".join(text_words), language="en", language_probability=float(rng.uniform(0.8, 1.0)),
            words=words, features={f: float(rng.normal()) for f in _FEATURES}, explanation=ex,
        ))
    return FileResult(
        file=path, duration_s=n_chunks * chunk_s + 0.5, sample_rate=SAMPLE_RATE, channels=1,
        models=ModelInfo(emotion=SYNTHETIC_MODEL, emotion_trained=trained, whisper="synthetic-asr",
                         emotion_labels=labels, absent_labels=tuple(absent)),
        chunks=chunks, settings=settings if settings is not None else {"synthetic": True, "explain": "fast"},
        notes=[] if n_chunks else ["silence only: no speech chunks"],
    )


@dataclass(frozen=True)
class SynthStats:
    files: int
    chunks: int
    emotion_rows: int
    seconds: float


def synthesize_database(db: str | os.PathLike, n_chunks: int = 1_000_000, *, chunks_per_file: int = 50,
                        n_folders: int = 20, days: int = 7, seed: int = 0, trained: bool = False) -> SynthStats:
    """Append ``n_chunks`` synthetic chunks (with base + granular emotion rows) to ``db``, in SQL.

    Files are spread over ``n_folders`` folders ('/synthetic/folder_NN') and over ``days`` days of
    ``recorded_at``. Scores are deterministic pseudo-random numbers normalised per chunk. ``trained``
    sets files.emotion_trained (keep False unless a load test needs the "trained" code paths).
    """
    from pipeline.taxonomy import GRANULAR, THRESHOLDS
    from warehouse.connection import write_connection
    from warehouse.schema import utc_now

    t0 = time.perf_counter()
    n_files = max(1, -(-n_chunks // chunks_per_file))
    labels = "[" + ", ".join(f"'{e}'" for e in BASE_EMOTIONS) + "]"
    granular_rows = ", ".join(f"('{e}', '{name}', {THRESHOLDS[e]})"
                              for e, kinds in GRANULAR.items() for name in kinds["primary"])
    settings = json.dumps({"synthetic": True, "seed": seed}, sort_keys=True)
    with write_connection(db) as con:
        con.begin()
        run_id = con.execute(
            "INSERT INTO runs (run_id, started_at, finished_at, status, n_files, n_failed, n_skipped, config, source) "
            "VALUES (nextval('run_id_seq'), ?, ?, 'completed', ?, 0, 0, ?, 'batch') RETURNING run_id",
            [utc_now(), utc_now(), n_files, settings]).fetchall()[0][0]
        con.execute(f"""
            CREATE TEMP TABLE _sf AS
            SELECT i, nextval('file_id_seq') AS file_id,
                   least({chunks_per_file}, {n_chunks} - i * {chunks_per_file}) AS n
            FROM range({n_files}) t(i)
        """)
        con.execute(f"""
            INSERT INTO files (file_id, path, sha256, duration_s, sample_rate, channels, status, run_id,
                               emotion_model, whisper_model, folder, source, emotion_trained, settings_key,
                               settings, ingested_at, recorded_at, notes, emotion_labels, absent_labels, n_chunks)
            SELECT file_id,
                   printf('/synthetic/folder_%02d/run{run_id}_%07d.wav', i % {n_folders}, i),
                   sha256(printf('synthetic-{seed}-{run_id}-%d', i)), n * 2.0, {SAMPLE_RATE}, 1, 'ok', {run_id},
                   '{SYNTHETIC_MODEL}', 'synthetic-asr', printf('/synthetic/folder_%02d', i % {n_folders}),
                   'batch', {str(bool(trained)).lower()}, 'synthetic', ?, ?,
                   TIMESTAMP '2025-01-06 00:00:00'
                       + to_seconds(CAST(hash(i, {seed}) % {days * 86400} AS BIGINT)),
                   []::VARCHAR[], {labels}, []::VARCHAR[], n
            FROM _sf
        """, [settings, utc_now()])
        con.execute(f"""
            CREATE TEMP TABLE _sc AS
            SELECT f.file_id, k AS idx, nextval('chunk_id_seq') AS chunk_id,
                   list_transform(range(6), lambda j: pow((hash(f.file_id, k, j, {seed}) % 1000000) / 1e6, 3)) AS r
            FROM _sf f, LATERAL (SELECT unnest(range(f.n)) AS k)
        """)
        con.execute(f"""
            CREATE TEMP TABLE _ss AS
            SELECT file_id, idx, chunk_id,
                   list_transform(r, lambda x: x / list_sum(r)) AS s
            FROM _sc
        """)
        con.execute(f"""
            INSERT INTO chunks (chunk_id, file_id, idx, start_s, end_s, transcript, language,
                                language_probability, dominant, dominant_score)
            SELECT chunk_id, file_id, idx, idx * 2.0, idx * 2.0 + 2.0, 'synthetic chunk', 'en', 0.99,
                   {labels}[list_position(s, list_max(s))], list_max(s)
            FROM _ss ORDER BY chunk_id
        """)
        con.execute(f"""
            INSERT INTO emotions (chunk_id, kind, label, score)
            SELECT chunk_id, 'base', unnest({labels}), unnest(s) FROM _ss ORDER BY chunk_id
        """)
        con.execute(f"""
            INSERT INTO emotions (chunk_id, kind, label, score, granular_kind)
            SELECT c.chunk_id, 'granular', g.name, c.dominant_score, 'primary'
            FROM chunks c JOIN (VALUES {granular_rows}) g(dominant, name, threshold)
              ON c.dominant = g.dominant AND c.dominant_score >= g.threshold
            WHERE c.file_id IN (SELECT file_id FROM _sf)
            ORDER BY c.chunk_id
        """)
        n_emotions = con.execute(
            "SELECT count(*) FROM emotions WHERE chunk_id IN (SELECT chunk_id FROM _sc)").fetchall()[0][0]
        for t in ("_ss", "_sc", "_sf"):
            con.execute(f"DROP TABLE {t}")
        con.commit()
    return SynthStats(n_files, n_chunks, int(n_emotions), time.perf_counter() - t0)

