"""Classification metrics over the classes a model has: UAR, WA, macro-F1, per-class recall, confusion."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.types import BASE_EMOTIONS


@dataclass
class EvalResult:
    """Classification metrics over the classes a model has.

    Attributes:
        uar: unweighted average recall (balanced accuracy) over ``labels``.
        wa: weighted accuracy (plain accuracy).
        macro_f1: mean F1 over ``labels``.
        per_class: recall per canonical emotion; None for a class the model lacks or the data lacks.
        confusion: rows = true class, columns = predicted class, both in ``labels`` order.
        labels: the classes scored (the model's canonical classes present in the data).
        n: clips scored (the confusion matrix sums to it).
        absent: canonical emotions the model does not have.
        skipped: rows not scored -> count, by reason/label.
        model: the model's name.
    """

    uar: float
    wa: float
    macro_f1: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    labels: list[str]
    n: int
    absent: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    model: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A plain-text report (what ``emotivoice evaluate`` prints without --json)."""
        lines = [f"model {self.model}: {self.n} clips",
                 f"UAR (balanced accuracy) {self.uar:.3f}   WA (accuracy) {self.wa:.3f}   macro-F1 {self.macro_f1:.3f}",
                 "per-class recall:"]
        for e in BASE_EMOTIONS:
            v = self.per_class.get(e)
            lines.append(f"  {e:<10} {'absent from model' if e in self.absent else ('no clips' if v is None else f'{v:.3f}')}")
        width = max(len(x) for x in self.labels) if self.labels else 5
        lines.append("confusion (rows true, columns predicted):")
        lines.append(" " * (width + 2) + " ".join(f"{x[:5]:>5}" for x in self.labels))
        for lab, row in zip(self.labels, self.confusion):
            lines.append(f"  {lab:<{width}}" + " ".join(f"{v:>5d}" for v in row))
        if self.skipped:
            lines.append("not scored: " + ", ".join(f"{k} ({v})" for k, v in sorted(self.skipped.items())))
        return "\n".join(lines)


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str], *,
                    absent: Sequence[str] = (), model: str = "",
                    skipped: dict[str, int] | None = None) -> EvalResult:
    """UAR, WA, macro-F1, per-class recall and the confusion matrix over ``labels``.

    Classes of ``labels`` with no true clip get recall None and are left out of UAR/macro-F1.
    """
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    conf = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        conf[index[t], index[p]] += 1
    n = int(conf.sum())
    support = conf.sum(1)
    predicted = conf.sum(0)
    recalls: dict[str, float | None] = {e: None for e in BASE_EMOTIONS}
    f1s = []
    for i, lab in enumerate(labels):
        if support[i] == 0:
            recalls[lab] = None
            continue
        r = conf[i, i] / support[i]
        prec = conf[i, i] / predicted[i] if predicted[i] else 0.0
        recalls[lab] = float(r)
        f1s.append(0.0 if r + prec == 0 else 2 * r * prec / (r + prec))
    present = [recalls[lab] for lab in labels if recalls.get(lab) is not None]
    return EvalResult(
        uar=float(np.mean(present)) if present else 0.0,
        wa=float(np.trace(conf) / n) if n else 0.0,
        macro_f1=float(np.mean(f1s)) if f1s else 0.0,
        per_class=recalls,
        confusion=conf.tolist(),
        labels=labels,
        n=n,
        absent=list(absent),
        skipped=dict(skipped or {}),
        model=model,
    )


def scored_labels(model_labels: Sequence[str]) -> list[str]:
    """The canonical classes a model has, in canonical order."""
    return [e for e in BASE_EMOTIONS if e in model_labels]



def metrics_from_proba(proba: np.ndarray, y_true: Sequence[str], model_labels: Sequence[str], *,
                       model: str = "", skipped: dict[str, int] | None = None) -> EvalResult:
    """Metrics from probabilities: the prediction is the argmax over the model's canonical classes.

    Clips whose true class the model lacks are not scored (counted in ``skipped``).
    """
    labels = scored_labels(model_labels)
    if not labels:
        raise ValueError(f"model {model!r} has none of the six canonical emotions (labels: {list(model_labels)})")
    cols = [list(model_labels).index(lab) for lab in labels]
    skipped = dict(skipped or {})
    keep = [i for i, t in enumerate(y_true) if t in labels]
    for t in y_true:
        if t not in labels:
            skipped[f"{t} (absent from model)"] = skipped.get(f"{t} (absent from model)", 0) + 1
    pred = [labels[int(np.argmax(proba[i, cols]))] for i in keep]
    absent = [e for e in BASE_EMOTIONS if e not in model_labels]
    return compute_metrics([y_true[i] for i in keep], pred, labels, absent=absent, model=model, skipped=skipped)



def plot_confusion(result: EvalResult, path: str | os.PathLike) -> Path:
    """Save the confusion matrix (row-normalised colours, counts written) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(result.confusion, dtype=float)
    rows = conf.sum(1, keepdims=True)
    norm = np.divide(conf, rows, out=np.zeros_like(conf), where=rows > 0)
    k = len(result.labels)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2, 1.1 * k + 1.5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), result.labels, rotation=45, ha="right")
    ax.set_yticks(range(k), result.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{result.model}: UAR {result.uar:.3f}, WA {result.wa:.3f}, n={result.n}")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, int(conf[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
