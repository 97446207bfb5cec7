"""Attention maps from the analysis' own forward pass: the capturing attention kernel and the reducers.

- :data:`CAPTURE_ATTENTION` (``emotivoice_capture``): an attention function registered with transformers'
  AttentionInterface that hands each layer's mean-over-heads weights to a per-thread sink
  (:func:`capture_to`) while computing the layer's output; ``HFEmotionModel.frames_with_attention`` switches
  to it for one forward pass. Design and limits: docs/explanations.md; cost: docs/benchmarks.md.
- :class:`AttentionReducer`: downsamples each (T, T) layer map and carries the attention rollout as the
  pass makes them, so no (T, T) map is kept.
- :func:`frames_and_reduced_attention` / :func:`attention_maps`: per chunk, frames plus reduced maps.
"""

from __future__ import annotations

import functools
import logging
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from pipeline.types import EmotionModel

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# the capturing kernel
# --------------------------------------------------------------------------------------------------

#: Name under which the capturing attention is registered with transformers' AttentionInterface.
CAPTURE_ATTENTION = "emotivoice_capture"
_CAPTURE = threading.local()


def _capture_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention (softmax(Q K^T * scaling + mask) V, as transformers' ``eager_attention_forward``)
    that hands each layer's mean-over-heads weights (B, T, T) to the thread's active sink and returns no
    weights. Cheaper than "eager" + ``output_attentions``: Q is scaled before the product (T x d, not
    T x T), and no per-head maps are kept or returned."""
    import torch

    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query * scaling, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    try:  # in place: a (B, heads, T, T) buffer fewer to allocate and fault in, per layer
        weights = torch.ops.aten._softmax.out(scores, -1, False, out=scores)
    except Exception:  # pragma: no cover - an aten without the out= variant
        weights = torch.softmax(scores, dim=-1)
    if dropout and module.training:
        weights = torch.nn.functional.dropout(weights, p=dropout, training=True)
    out = torch.matmul(weights, value).transpose(1, 2)
    sink = getattr(_CAPTURE, "sink", None)
    if sink is not None:
        sink(weights.float().mean(dim=1))
    return out, None


@functools.lru_cache(maxsize=1)
def capture_registered() -> bool:
    """Register :data:`CAPTURE_ATTENTION` (attention and its mask: eager-style additive masks) once;
    False on a transformers without AttentionInterface (the eager fallback is used then)."""
    try:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

        AttentionInterface.register(CAPTURE_ATTENTION, _capture_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_ATTENTION, eager_mask)
        return True
    except Exception as exc:  # pragma: no cover - depends on the transformers version
        logger.info("transformers has no AttentionInterface (%s): attention maps use eager attention", exc)
        return False


@contextmanager
def capture_to(sink: Callable[[Any], None]) -> Iterator[None]:
    """Within the block, on this thread, :data:`CAPTURE_ATTENTION` hands each layer's (B, T, T) maps to ``sink``."""
    _CAPTURE.sink = sink
    try:
        yield
    finally:
        _CAPTURE.sink = None


# --------------------------------------------------------------------------------------------------
# reducing the maps
# --------------------------------------------------------------------------------------------------

def _block_edges(t: int, n: int) -> np.ndarray:
    return np.unique(np.linspace(0, t, n + 1).round().astype(int))


def downsample_attention(maps: np.ndarray, size: int) -> np.ndarray:
    """(..., T, T) row-stochastic maps -> (..., n, n), n = min(size, T): rows averaged, columns summed.

    Averaging query rows and summing key columns keeps every row a distribution (sums to 1).
    """
    maps = np.asarray(maps, dtype=np.float32)
    t = maps.shape[-1]
    n = max(1, min(int(size), t))
    edges = _block_edges(t, n)
    starts, widths = edges[:-1], np.diff(edges)
    cols = np.add.reduceat(maps, starts, axis=-1)
    rows = np.add.reduceat(cols, starts, axis=-2) / widths[:, None]
    return rows


def attention_rollout(maps: np.ndarray) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) of (layers, T, T) maps: prod_l (0.5 A_l + 0.5 I), rows normalised."""
    maps = np.asarray(maps, dtype=np.float32)  # float32: rows are renormalised at every layer
    t = maps.shape[-1]
    eye = np.eye(t, dtype=np.float32)
    rollout = eye
    for a in maps:
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = a @ rollout
    return rollout


class AttentionReducer:
    """Reduces (T, T) layer maps as a forward pass makes them (call it with each layer's map, in layer
    order; numpy arrays or torch tensors): the per-layer maps downsampled as ``downsample_attention``
    does, and the downsampled attention rollout, without keeping any (T, T) map.

    The downsampled rollout is P_r A_L ... A_1 P_c (P_r averages row blocks, P_c sums column blocks,
    A = 0.5 A + 0.5 I with rows renormalised), carried as X_l = A_l X_(l-1), X_0 = P_c: one (T, T) x
    (T, 2n) product per layer gives both the layer's column sums and the next X, instead of T^3 work,
    exactly ``downsample_attention(attention_rollout(maps), size)``. The arithmetic is torch's (float32),
    on the maps' device and torch's threads: it runs inside the model's forward pass.
    """

    def __init__(self, size: int):
        self.size = int(size)
        self.layers: list = []
        self._carry = self._cols = self._rows = None
        self.frames = 0

    def __call__(self, layer) -> None:
        import torch

        a = torch.as_tensor(layer, dtype=torch.float32)
        t = a.shape[-1]
        if self._carry is None:
            edges = _block_edges(t, max(1, min(self.size, t)))
            n = len(edges) - 1
            block = torch.zeros(t, n, device=a.device)
            for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
                block[lo:hi, j] = 1.0
            self._cols = block  # P_c: sums column blocks
            self._rows = (block / block.sum(dim=0)).T.contiguous()  # P_r: averages row blocks
            self._carry = block.clone()
            self.frames = t
        n = self._cols.shape[1]
        both = a @ torch.cat([self._cols, self._carry], dim=1)
        self.layers.append(self._rows @ both[:, :n])
        norm = 0.5 * a.sum(dim=-1, keepdim=True) + 0.5
        self._carry = (0.5 * both[:, n:] + 0.5 * self._carry) / norm

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(layers, n, n) downsampled maps and the (n, n) downsampled rollout (float32 numpy)."""
        import torch

        if self._carry is None:
            raise ValueError("no attention layers were given")
        rollout = self._rows @ self._carry
        return (torch.stack(self.layers).cpu().numpy().astype(np.float32),
                rollout.cpu().numpy().astype(np.float32))

    def note(self) -> str:
        return (f"mean over heads of each of {len(self.layers)} layers and attention rollout, "
                f"{self.frames} frames downsampled to {self._cols.shape[1]} steps per side")


def downsampled_rollout(maps: np.ndarray, size: int) -> np.ndarray:
    """``downsample_attention(attention_rollout(maps), size)``, computed without the full (T, T) product
    (see :class:`AttentionReducer`)."""
    reducer = AttentionReducer(size)
    for a in np.asarray(maps, dtype=np.float32):
        reducer(a)
    return reducer.result()[1]


def frames_and_reduced_attention(model: EmotionModel, signals: Sequence[np.ndarray], size: int
                                 ) -> tuple[list[np.ndarray], list[tuple | None]]:
    """Per chunk: the frames and ``attention_maps`` of one forward pass, each layer's (T, T) map reduced
    as the pass makes it (:class:`AttentionReducer`). A chunk whose maps fail keeps its frames and a
    note saying why; a model without attention gets None (``attention_maps`` says so)."""
    frames: list[np.ndarray] = []
    reduced: list[tuple | None] = []
    for s in signals:
        x = np.asarray(s, dtype=np.float32).reshape(-1)
        if x.size == 0:
            frames.append(np.zeros((0, 1), np.float32))
            reduced.append(None)
            continue
        if not getattr(model, "has_attention", False):
            frames.append(np.asarray(model.frame_features(x), dtype=np.float32))
            reduced.append(None)
            continue
        reducer = AttentionReducer(size)
        try:
            fr = model.frames_with_attention(x, reducer)
            red = ((*reducer.result(), reducer.note()) if reducer.layers
                   else (None, None, f"emotion model {model.name} returned no attention maps"))
        except Exception as exc:  # never let a picture stop the analysis
            logger.warning("attention maps of %s failed: %s", model.name, exc)
            fr, red = model.frame_features(x), (None, None, f"attention maps could not be computed: {exc}")
        frames.append(np.asarray(fr, dtype=np.float32))
        reduced.append(red)
    return frames, reduced


def attention_maps(model: EmotionModel, samples: np.ndarray, size: int
                   ) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """(per-layer maps (layers, n, n), rollout (n, n), note) of one forward pass — maps None with a plain
    note when the model has none or they fail (``frames_and_reduced_attention``).

    Args:
        model: the emotion model.
        samples: the chunk.
        size: most time steps per side after downsampling.
    """
    if not getattr(model, "has_attention", False):
        return None, None, f"emotion model {model.name} has no attention (not a transformer): no attention maps"
    _, (reduced,) = frames_and_reduced_attention(model, [samples], size)
    return reduced or (None, None, "empty chunk: no attention maps")
