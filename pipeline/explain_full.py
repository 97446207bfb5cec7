"""Full explanation tier: input-level masking with real re-forwards of the model.

A coalition S of time segments is evaluated by replacing every segment outside S with digital silence
and running ``model.predict_proba`` on the result (batched). The model-evaluation budget
(``config.explain_budget``) is spent once on a set of masks chosen by ``shap.KernelExplainer``
(KernelSHAP's coalition sampling; all 2^n coalitions when the budget covers them, which makes the values
exact); LIME then fits its kernel-weighted ridge on the very same evaluated masks. f(all) is the
model's output on the chunk itself, f(∅) on an all-silent chunk of the same length.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from pipeline.explain_fast import LimeResult, SegmentGame, ShapleyResult, lime_over_masks, shapley_over_segments
from pipeline.runtime import SAMPLE_RATE

logger = logging.getLogger(__name__)


def mask_signal(samples: np.ndarray, bounds: list[tuple[float, float]], keep: np.ndarray,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A copy of ``samples`` with every segment whose ``keep`` entry is 0 replaced by silence (zeros)."""
    out = np.array(samples, dtype=np.float32, copy=True)
    for (start, end), k in zip(bounds, keep):
        if k < 0.5:
            out[int(round(start * sample_rate)):int(round(end * sample_rate))] = 0.0
    return out


class MaskedEvaluator:
    """Evaluates segment masks with real forward passes, batched, each distinct mask at most once.

    Attributes:
        evaluated: {mask bytes: output row} of every mask run so far.
        forwards: number of signals passed to ``predict_proba``.
    """

    def __init__(self, model, samples: np.ndarray, bounds: list[tuple[float, float]], *, batch_size: int = 8):
        self.model = model
        self.samples = np.asarray(samples, dtype=np.float32)
        self.bounds = bounds
        self.n = len(bounds)
        self.batch_size = max(1, int(batch_size))
        self.evaluated: dict[bytes, np.ndarray] = {}
        self.order: list[bytes] = []
        self.forwards = 0

    @staticmethod
    def _key(mask: np.ndarray) -> bytes:
        return (np.asarray(mask) > 0.5).astype(np.uint8).tobytes()

    def seed(self, mask: np.ndarray, output: np.ndarray) -> None:
        """Record an output already known (e.g. f(all) from the analysis) without a forward pass."""
        key = self._key(mask)
        if key not in self.evaluated:
            self.evaluated[key] = np.asarray(output, dtype=np.float64)
            self.order.append(key)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=np.float64).reshape(-1, self.n)
        keys = [self._key(m) for m in masks]
        todo: list[bytes] = []
        for k in keys:
            if k not in self.evaluated and k not in todo:
                todo.append(k)
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i:i + self.batch_size]
            signals = [mask_signal(self.samples, self.bounds, np.frombuffer(k, dtype=np.uint8))
                       for k in batch]
            out = np.asarray(self.model.predict_proba(signals), dtype=np.float64)
            self.forwards += len(signals)
            for k, row in zip(batch, out):
                self.evaluated[k] = row
                self.order.append(k)
        return np.stack([self.evaluated[k] for k in keys])

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """All evaluated masks (all-ones mask first) and their outputs."""
        ones = self._key(np.ones(self.n))
        keys = [ones] + [k for k in self.order if k != ones]
        masks = np.stack([np.frombuffer(k, dtype=np.uint8).astype(np.float64) for k in keys])
        return masks, np.stack([self.evaluated[k] for k in keys])


@contextmanager
def _numpy_seed(seed: int):
    """shap.KernelExplainer samples with numpy's global RNG: seed it, then restore the caller's state."""
    state = np.random.get_state()
    np.random.seed(seed % (2**32))
    try:
        yield
    finally:
        np.random.set_state(state)


@dataclass
class FullTierResult:
    shapley: ShapleyResult
    lime: LimeResult
    evaluator: MaskedEvaluator


def explain_full_tier(model, samples: np.ndarray, bounds: list[tuple[float, float]], label_idx: int, *,
                      budget: int, batch_size: int = 8, seed: int = 0,
                      full_output: np.ndarray | None = None, control: SegmentGame | None = None
                      ) -> FullTierResult:
    """KernelSHAP and LIME of input-level segment masking, sharing ``budget`` model evaluations.

    With a ``control`` game g (a cheap approximation of the real game f, see
    :func:`pipeline.explain_fast.silenced_frames_game`), the Shapley values are estimated as
    exact-Shapley(g) + KernelSHAP(f - g): Shapley values are linear in the game, so this estimates the
    same quantity, and KernelSHAP's sampling error now only concerns the residual f - g, which is small
    when g is a good stand-in. Efficiency still holds exactly (values sum to f(all) - f(none)); with a
    budget covering every coalition the values are exact either way.

    Args:
        model: an EmotionModel.
        samples: the chunk (16 kHz float32).
        bounds: (start_s, end_s) of each segment.
        label_idx: the output LIME explains (KernelSHAP explains every output at once).
        budget: forward passes to spend (f(all) and f(∅) included; at least n + 2 whatever the budget,
            at most 2^n: then every coalition is evaluated and the values are exact).
        batch_size: signals per ``predict_proba`` call.
        seed: seeds KernelSHAP's coalition sampling.
        full_output: the model's output on the unmasked chunk when already known (saves one pass).
        control: optional control-variate game over the same segments.
    """
    import shap

    n = len(bounds)
    evaluator = MaskedEvaluator(model, samples, bounds, batch_size=batch_size)
    if full_output is not None:
        evaluator.seed(np.ones(n), full_output)
    zeros, ones = np.zeros((1, n)), np.ones((1, n))
    total = 2**n if n < 31 else float("inf")
    nsamples = int(min(max(budget - 2, n), total - 2)) if n > 1 else 1
    game = evaluator if control is None else (lambda m: evaluator(m) - control(m))
    with _numpy_seed(seed):
        explainer = shap.KernelExplainer(game, zeros)
        values = explainer.shap_values(ones, nsamples=nsamples, l1_reg=False, silent=True)
    values = np.asarray(values, dtype=np.float64)
    # shap returns (1, n, L) for a multi-output model (older versions: a list of (1, n) arrays)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    elif values.ndim == 3:
        values = np.moveaxis(values[:, 0, :], 0, 1)
    elif values.ndim == 2 and values.shape[0] == 1 and n > 1:
        values = values.T
    if control is not None:
        values = values + shapley_over_segments(control, seed=seed).values
    base = evaluator(zeros)[0]
    full = evaluator(ones)[0]
    exact = nsamples >= total - 2
    how = "exact Shapley values (every coalition evaluated)" if exact else "KernelSHAP estimate"
    if control is not None and not exact:
        how += (" with a control variate (exact Shapley values of the pooled head with the dropped segments' "
                "frames replaced by silence frames, plus KernelSHAP of the real game minus that)")
    method = (
        f"{how} over {n} time segments, segments outside a coalition replaced by digital silence and the "
        f"model re-run (shap.KernelExplainer, {evaluator.forwards} forward passes shared with LIME"
        f"{'' if exact else f', seed {seed}'})"
    )
    shapley = ShapleyResult(values=values, base=base, full=full, method=method, evaluations=evaluator.forwards)
    masks, outputs = evaluator.sample()
    lime = lime_over_masks(masks, outputs, label_idx, seed=seed)
    return FullTierResult(shapley=shapley, lime=lime, evaluator=evaluator)
