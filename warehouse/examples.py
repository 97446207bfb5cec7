"""Example queries an analyst would run; the dashboard's SQL tab offers them, docs/schema.md shows them.

Each runs as is (no parameters) in ``warehouse.query`` and in the ``duckdb`` CLI (1.4+). Queries about
emotions keep only results of trained models (``files.emotion_trained``): a random-weight model's
outputs are not emotions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    title: str
    description: str
    sql: str


EXAMPLES: tuple[Example, ...] = (
    Example(
        "Emotion mix per folder",
        "Share of chunks whose dominant emotion is each label, per folder.",
        """SELECT f.folder, c.dominant AS emotion, count(*) AS chunks,
       round(count(*) / sum(count(*)) OVER (PARTITION BY f.folder), 3) AS share
FROM files f JOIN chunks c USING (file_id)
WHERE f.status = 'ok' AND f.emotion_trained AND c.dominant IS NOT NULL
GROUP BY f.folder, c.dominant
ORDER BY f.folder, chunks DESC""",
    ),
    Example(
        "Angriest chunks with their transcripts",
        "The 20 chunks with the highest anger probability, where they are and what was said.",
        """SELECT f.path, c.idx, round(c.start_s, 2) AS start_s, round(c.end_s, 2) AS end_s,
       round(e.score, 3) AS anger, c.transcript
FROM emotions e JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
WHERE e.kind = 'base' AND e.label = 'anger' AND e.score IS NOT NULL AND f.emotion_trained
ORDER BY e.score DESC
LIMIT 20""",
    ),
    Example(
        "Emotions over time within a file",
        "Base probabilities chunk by chunk for the most recently ingested file (NULL = the model lacks the class).",
        """WITH target AS (
    SELECT file_id FROM files WHERE status = 'ok' AND n_chunks > 0 AND emotion_trained
    ORDER BY ingested_at DESC, file_id DESC LIMIT 1)
SELECT c.idx, c.start_s, c.end_s, c.dominant,
       max(e.score) FILTER (WHERE e.label = 'anger') AS anger,
       max(e.score) FILTER (WHERE e.label = 'fear') AS fear,
       max(e.score) FILTER (WHERE e.label = 'happiness') AS happiness,
       max(e.score) FILTER (WHERE e.label = 'sadness') AS sadness,
       max(e.score) FILTER (WHERE e.label = 'surprise') AS surprise,
       max(e.score) FILTER (WHERE e.label = 'neutral') AS neutral
FROM chunks c JOIN emotions e USING (chunk_id)
WHERE c.file_id = (SELECT file_id FROM target) AND e.kind = 'base'
GROUP BY ALL
ORDER BY c.start_s""",
    ),
    Example(
        "Failures by reason",
        "Files that produced no results, grouped by status and reason, with one example path each.",
        """SELECT status, error AS reason, count(*) AS files, min(path) AS example_path
FROM files
WHERE status IN ('failed', 'skipped')
GROUP BY ALL
ORDER BY files DESC""",
    ),
    Example(
        "Ingestion runs",
        "Every run with its outcome, counts and duration.",
        """SELECT run_id, source, status, started_at, finished_at,
       date_diff('second', started_at, finished_at) AS seconds, n_files, n_failed, n_skipped
FROM runs
ORDER BY run_id DESC""",
    ),
    Example(
        "Emotion mix by hour of day",
        "Dominant-emotion shares by the hour the audio was recorded (file time; ingestion time if unknown).",
        """SELECT hour(coalesce(f.recorded_at, f.ingested_at)) AS hour_utc, c.dominant AS emotion,
       count(*) AS chunks,
       round(count(*) / sum(count(*)) OVER (PARTITION BY hour_utc), 3) AS share
FROM files f JOIN chunks c USING (file_id)
WHERE f.status = 'ok' AND f.emotion_trained AND c.dominant IS NOT NULL
GROUP BY hour_utc, c.dominant
ORDER BY hour_utc, chunks DESC""",
    ),
    Example(
        "Moments that drove a prediction",
        "Time segments with the largest Shapley values, as seconds from the file start.",
        """SELECT f.path, c.idx, s.target_label, s.segment,
       round(c.start_s + s.start_s, 2) AS from_s, round(c.start_s + s.end_s, 2) AS to_s,
       round(s.value, 4) AS shapley_value, s.method
FROM shap s JOIN chunks c USING (chunk_id) JOIN files f USING (file_id)
WHERE s.kind = 'segment'
ORDER BY abs(s.value) DESC
LIMIT 20""",
    ),
    Example(
        "Acoustic features by attribution",
        "Mean absolute Shapley value of each acoustic feature (of the surrogate model named in method).",
        """SELECT feature, method, count(*) AS chunks, round(avg(abs(value)), 4) AS mean_abs_shapley
FROM shap
WHERE kind = 'acoustic'
GROUP BY ALL
ORDER BY mean_abs_shapley DESC""",
    ),
    Example(
        "Explanation quality",
        "Per tier: explained chunks, surrogate R², LIME fit and how many had a faithfulness check.",
        """SELECT tier, count(*) AS explained_chunks, round(avg(surrogate_r2), 3) AS mean_surrogate_r2,
       round(avg(lime_score), 3) AS mean_lime_score, count(faithfulness) AS faithfulness_checked
FROM explanations
GROUP BY tier
ORDER BY tier""",
    ),
    Example(
        "Faithfulness measures",
        "Mean of each deletion-AOPC measure (top-k segments vs random segments) per tier.",
        """SELECT tier, m.key AS measure, count(*) AS chunks, round(avg(m.value), 4) AS mean_value
FROM (SELECT tier, unnest(map_entries(faithfulness)) AS m FROM explanations WHERE faithfulness IS NOT NULL)
GROUP BY ALL
ORDER BY tier, measure""",
    ),
    Example(
        "Languages and transcription confidence",
        "Detected languages with their mean probability and minutes of speech.",
        """SELECT c.language, count(*) AS chunks, round(avg(c.language_probability), 3) AS mean_probability,
       round(sum(c.end_s - c.start_s) / 60, 2) AS minutes
FROM chunks c JOIN files f USING (file_id)
WHERE f.status = 'ok'
GROUP BY ALL
ORDER BY chunks DESC""",
    ),
    Example(
        "Which models produced the results",
        "Files per emotion model; emotion_trained = false marks random weights (not emotions).",
        """SELECT emotion_model, emotion_trained, whisper_model, count(*) AS files,
       sum(n_chunks) AS chunks, round(sum(duration_s) / 3600, 3) AS hours
FROM files
WHERE status = 'ok'
GROUP BY ALL
ORDER BY files DESC""",
    ),
    Example(
        "Same recording at several paths",
        "Content stored under more than one path (results copied, models run once).",
        """SELECT sha256, count(*) AS paths, list(path ORDER BY path) AS where_stored
FROM files
WHERE status = 'ok'
GROUP BY sha256
HAVING count(*) > 1
ORDER BY paths DESC""",
    ),
)


def examples_markdown() -> str:
    """The examples as the Markdown section embedded in docs/schema.md."""
    parts = []
    for i, ex in enumerate(EXAMPLES, 1):
        parts.append(f"### {i}. {ex.title}\n\n{ex.description}\n\n```sql\n{ex.sql}\n```\n")
    return "\n".join(parts)


BEGIN_MARK = "<!-- examples:begin (generated by `python -m warehouse.examples --write docs/schema.md`) -->"
END_MARK = "<!-- examples:end -->"


def write_into(path: str) -> None:
    """Replace the text between the example markers of a Markdown file with ``examples_markdown()``."""
    from pathlib import Path

    p = Path(path)
    text = p.read_text(encoding="utf-8")
    head, sep, rest = text.partition(BEGIN_MARK)
    _, sep2, tail = rest.partition(END_MARK)
    if not sep or not sep2:
        raise ValueError(f"{path}: example markers not found ({BEGIN_MARK!r} ... {END_MARK!r})")
    p.write_text(f"{head}{BEGIN_MARK}\n\n{examples_markdown()}\n{END_MARK}{tail}", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["--write"] and len(sys.argv) == 3:
        write_into(sys.argv[2])
    else:
        sys.stdout.write(examples_markdown())
