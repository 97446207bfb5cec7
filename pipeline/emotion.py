"""Loading and running the emotion models: the seed's HuBERT head, transformers audio-classification
checkpoints (e.g. ``superb/hubert-base-superb-er``) and, as fallback, the shipped compact model.

Public API:
    load_emotion_model(spec, config) -> EmotionModel   (shared per resolved spec, device, quantisation)
    HubertForSpeechClassification                      (the seed architecture as a transformers model)
    HFEmotionModel                                     (EmotionModel over a transformers checkpoint)
    clear_model_cache()

Every supported model is "frames -> mean over valid frames -> small head -> softmax":

* seed form (config ``architectures: ["HubertForSpeechClassification"]``, ``pooling_mode: "mean"``): HuBERT
  encoder output frames -> mean -> ``classifier.dense`` (H->H) + tanh -> dropout -> ``classifier.out_proj``
  (H->labels). These are the weight names of the public checkpoints of this form.
* transformers ``*ForSequenceClassification`` audio models (HuBERT, wav2vec2, WavLM, ...): hidden states
  (the softmax-weighted sum of all layers when ``use_weighted_layer_sum``, else the last layer) ->
  ``projector`` -> mean -> ``classifier``. ``frame_features`` returns the projected frames, so the mean of
  ``frame_features`` followed by ``head_proba`` reproduces the model's own forward exactly.

Padding. HuBERT-base style encoders (``feat_extract_norm="group"``) normalise the first convolution over
the whole clip, so zero padding changes every frame; their feature extractors say
``return_attention_mask=False``. For those models only clips of exactly equal length share a forward pass
(so a clip's result never depends on its batch neighbours). Models whose feature extractor returns an
attention mask (layer-norm encoders, e.g. HuBERT-large) are batched with right padding plus the mask, and
mean pooling counts only the valid frames.

CPU speed (``config.quantize``): 'int8' applies dynamic int8 quantisation to the transformer encoder's
Linear layers; 'none' keeps fp32; 'auto' follows the measurement of ``python -m bench.hubert_speed``
(``pipeline.model_resolution.AUTO_INT8_ON_CPU``; numbers in docs/benchmarks.md).

Which checkpoint 'auto' means, the local cache and the hub: :mod:`pipeline.model_resolution`; the attention
kernel ``frames_with_attention`` switches to: :mod:`pipeline.attention`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from pipeline import attention, model_resolution as resolution
from pipeline.config import Config
from pipeline.model_cache import shared_while_used
from pipeline.runtime import SAMPLE_RATE, hub_offline, resolve_device
from pipeline.taxonomy import to_canonical
from pipeline.types import EmotionModel, ModelUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: Labels of the seed model (its output order).
SEED_LABELS: tuple[str, ...] = ("Anger", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")

#: Config flag (in a checkpoint's config.json) marking deliberately random weights (test fixtures).
RANDOM_INIT_FLAG = "emotivoice_random_init"

#: On CPU a forward pass takes at most this many samples of audio in all (8 s), ``batch_size`` signals
#: at most: batching pays on CPU only for short clips (measurements: docs/benchmarks.md, "Batching on CPU").
CPU_BATCH_SAMPLES = 8 * SAMPLE_RATE


# --------------------------------------------------------------------------------------------------
# The seed architecture as a transformers model
# --------------------------------------------------------------------------------------------------

def _seed_classes():
    """Define the seed classes on first use (keeps ``import pipeline.emotion`` free of torch)."""
    if _SEED.get("model") is not None:
        return _SEED["head"], _SEED["model"]

    import torch
    from torch import nn
    from transformers.modeling_outputs import SequenceClassifierOutput
    from transformers.models.hubert.modeling_hubert import HubertModel, HubertPreTrainedModel

    class HubertClassificationHead(nn.Module):
        """Dense(H->H) + tanh -> Dropout -> Dense(H->labels), on mean-pooled frames."""

        def __init__(self, config):
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(getattr(config, "final_dropout", 0.1))
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, pooled: torch.Tensor) -> torch.Tensor:
            return self.out_proj(self.dropout(torch.tanh(self.dense(pooled))))

    class HubertForSpeechClassification(HubertPreTrainedModel):
        """HuBERT encoder -> mean over valid frames -> ``classifier`` head (the seed's emotion model).

        Config: a ``HubertConfig`` with ``pooling_mode="mean"`` and ``id2label``. Weight names follow the
        public checkpoints of this form: ``hubert.*``, ``classifier.dense``, ``classifier.out_proj``.
        """

        def __init__(self, config):
            super().__init__(config)
            mode = getattr(config, "pooling_mode", "mean")
            if mode != "mean":
                raise ValueError(f"HubertForSpeechClassification: pooling_mode {mode!r} is not supported "
                                 "(only 'mean': the explanations rely on mean pooling)")
            self.pooling_mode = mode
            self.hubert = HubertModel(config)
            self.classifier = HubertClassificationHead(config)
            self.post_init()

        def freeze_feature_encoder(self):
            self.hubert.feature_extractor._freeze_parameters()

        def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
            """Mean over the valid frames of (B, T, H) hidden states -> (B, H)."""
            if attention_mask is None:
                return hidden.mean(dim=1)
            valid = self._get_feature_vector_attention_mask(hidden.shape[1], attention_mask)
            valid = valid.unsqueeze(-1).to(hidden.dtype)
            return (hidden * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1.0)

        def forward(self, input_values, attention_mask=None, labels=None, **kwargs):
            outputs = self.hubert(input_values, attention_mask=attention_mask, **kwargs)
            logits = self.classifier(self.pool(outputs.last_hidden_state, attention_mask))
            loss = None
            if labels is not None:
                loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))
            return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states,
                                            attentions=outputs.attentions)

    HubertClassificationHead.__module__ = __name__
    HubertForSpeechClassification.__module__ = __name__
    HubertClassificationHead.__qualname__ = "HubertClassificationHead"
    HubertForSpeechClassification.__qualname__ = "HubertForSpeechClassification"
    _SEED.update(head=HubertClassificationHead, model=HubertForSpeechClassification)
    return HubertClassificationHead, HubertForSpeechClassification


_SEED: dict[str, Any] = {}


def __getattr__(name: str):
    if name in ("HubertForSpeechClassification", "HubertClassificationHead"):
        head, model = _seed_classes()
        return model if name == "HubertForSpeechClassification" else head
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------------
# EmotionModel over a transformers checkpoint
# --------------------------------------------------------------------------------------------------

class HFEmotionModel(EmotionModel):
    """An emotion model backed by a transformers checkpoint (seed head or ``*ForSequenceClassification``).

    Attributes (besides EmotionModel's):
        raw_labels: the checkpoint's own labels, in its output order.
        architecture: 'seed' (HubertForSpeechClassification) or 'sequence' (projector + classifier head).
        device: torch device string the model runs on.
        quantized: 'int8' or 'none'.
        batch_size: signals per forward pass (set from ``config.batch_size`` by ``load_emotion_model``).
        pads_with_mask: whether signals of different lengths share a forward pass (padding + mask).
    """

    has_attention = True
    sample_rate = SAMPLE_RATE

    def __init__(self, model, feature_extractor, *, name: str, trained: bool, device: str = "cpu",
                 quantized: str = "none", batch_size: int = 8):
        import torch

        self._torch = torch
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.name = name
        self.trained = bool(trained)
        self.device = device
        self.quantized = quantized
        self.batch_size = max(1, int(batch_size))
        self._lock = threading.RLock()
        self._capture_ok: bool | None = None  # whether CAPTURE_ATTENTION reaches this model's layers
        self._affine_cache: tuple | None = None  # head_affine's float64 weights and the tensor versions
        self._dtype = next(model.parameters()).dtype  # fp32, or bf16 for a model cast with .to(torch.bfloat16)
        cfg = model.config
        self._base = getattr(model, model.base_model_prefix)
        self.architecture = "seed" if hasattr(model.classifier, "out_proj") else "sequence"
        self._weighted = self.architecture == "sequence" and bool(getattr(cfg, "use_weighted_layer_sum", False))

        self.raw_labels = tuple(str(cfg.id2label[i]) for i in range(cfg.num_labels))
        mapped = [to_canonical(lab) or lab for lab in self.raw_labels]
        self.labels = tuple(dict.fromkeys(mapped))
        merge = np.zeros((len(mapped), len(self.labels)), dtype=np.float32)
        for i, lab in enumerate(mapped):
            merge[i, self.labels.index(lab)] = 1.0
        self._merge = None if len(self.labels) == len(mapped) else torch.from_numpy(merge)
        if self._merge is not None:
            log.info("emotion model %s: labels %s map onto %s; their probabilities are summed",
                     name, self.raw_labels, self.labels)
        self.extra_labels = tuple(lab for lab in self.labels if to_canonical(lab) is None)

        strides = np.prod(cfg.conv_stride)
        self.frame_hop_s = float(strides) / self.sample_rate
        self._min_samples = _receptive_field(cfg.conv_kernel, cfg.conv_stride)
        fe_mask = bool(getattr(feature_extractor, "return_attention_mask", False))
        self.pads_with_mask = fe_mask and getattr(cfg, "feat_extract_norm", "group") != "group"
        self._do_normalize = bool(getattr(feature_extractor, "do_normalize", True))
        self._pad_value = float(getattr(feature_extractor, "padding_value", 0.0))

    # ---- helpers
    def __repr__(self) -> str:
        return (f"HFEmotionModel(name={self.name!r}, labels={self.labels}, trained={self.trained}, "
                f"device={self.device!r}, quantized={self.quantized!r})")

    def _prepare(self, signal: np.ndarray) -> np.ndarray:
        """Float32 mono 16 kHz -> model input (normalised as the feature extractor does, padded to >= 1 frame)."""
        x = np.asarray(signal, dtype=np.float32).reshape(-1)
        if x.size == 0:
            raise ValueError(f"emotion model {self.name}: empty signal")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"emotion model {self.name}: signal contains NaN or infinite samples")
        if self._do_normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        if x.size < self._min_samples:
            x = np.pad(x, (0, self._min_samples - x.size), constant_values=self._pad_value)
        return x.astype(np.float32, copy=False)

    def _attention_modules(self) -> list | None:
        """The encoder layers' self-attention modules (wav2vec2-family layout), None if not found."""
        layers = getattr(getattr(self._base, "encoder", None), "layers", None)
        mods = [getattr(layer, "attention", None) for layer in (layers or ())]
        return mods if mods and all(m is not None for m in mods) else None

    def _n_frames(self, n_samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(int(n_samples)))

    def _encode(self, inputs: list[np.ndarray], *, attentions: bool = False
                ) -> tuple["torch.Tensor", list[int], "torch.Tensor | None"]:
        """Prepared inputs -> (B, T, D) frames (before pooling), the number of valid frames of each and,
        with ``attentions``, the (B, layers, T, T) mean-over-heads attention of the same forward pass
        (the model must be running the "eager" implementation; see ``frames_with_attention``)."""
        torch = self._torch
        lengths = [x.size for x in inputs]
        longest = max(lengths)
        batch = np.full((len(inputs), longest), self._pad_value, dtype=np.float32)
        for i, x in enumerate(inputs):
            batch[i, : x.size] = x
        values = torch.from_numpy(batch).to(self.device, dtype=self._dtype)
        mask = None
        if self.pads_with_mask:
            mask_np = np.zeros_like(batch, dtype=np.int64)
            for i, n in enumerate(lengths):
                mask_np[i, :n] = 1
            mask = torch.from_numpy(mask_np).to(self.device)
        elif len(set(lengths)) > 1:  # never pad a model that expects no mask (see module docstring)
            raise AssertionError("signals of different lengths in one batch of a no-mask model")
        # ``attentions`` is the fallback for models whose attention bypasses AttentionInterface (the
        # usual path is CAPTURE_ATTENTION, see ``frames_with_attention``): eager + output_attentions.
        out = self._base(values, attention_mask=mask, output_hidden_states=self._weighted,
                         output_attentions=attentions)
        maps = None
        if attentions:
            layers = [None if a is None else a.float().mean(dim=1) for a in (out.attentions or ())]
            if not layers or any(a is None for a in layers):
                raise RuntimeError(f"emotion model {self.name}: the encoder returned no attention weights")
            maps = torch.stack(layers, dim=1)
        if self._weighted:
            stacked = torch.stack(tuple(out.hidden_states), dim=1)
            weights = torch.nn.functional.softmax(self.model.layer_weights, dim=-1)
            hidden = (stacked * weights.view(-1, 1, 1)).sum(dim=1)
        else:
            hidden = out.last_hidden_state
        if self.architecture == "sequence":
            hidden = self.model.projector(hidden)
        valid = [min(self._n_frames(n), hidden.shape[1]) for n in lengths]
        return hidden.float(), valid, maps

    def _head(self, pooled: "torch.Tensor") -> "torch.Tensor":
        return self._proba(self.model.classifier(pooled.to(self._dtype)))

    def _proba(self, logits: "torch.Tensor") -> "torch.Tensor":
        proba = self._torch.softmax(logits.float(), dim=-1)
        if self._merge is not None:
            proba = proba @ self._merge.to(proba.device)
        return proba

    def head_affine(self):
        """The head's first Linear layer as (W, b, rest) (see ``EmotionModel.head_affine``): ``classifier.dense``
        for the seed head (rest: tanh, ``out_proj``, softmax), ``classifier`` for a sequence head (rest:
        softmax). None for a head in another dtype or a non-Linear layer (the shortcut must be exact)."""
        torch = self._torch
        clf = self.model.classifier
        first = getattr(clf, "dense", None) if self.architecture == "seed" else clf
        if type(first) is not torch.nn.Linear or first.weight.dtype != torch.float32:
            return None
        # float64 copies, made again only when the weights change (in-place updates bump ``_version``)
        key = tuple((id(p), p._version) for p in (first.weight, first.bias) if p is not None)
        if self._affine_cache is None or self._affine_cache[0] != key:
            weight = first.weight.detach().cpu().double().numpy()
            bias = (first.bias.detach().cpu().double().numpy() if first.bias is not None
                    else np.zeros(weight.shape[0]))
            self._affine_cache = (key, weight, bias)
        _, weight, bias = self._affine_cache
        seed = self.architecture == "seed"

        def rest(pre: np.ndarray) -> np.ndarray:
            arr = torch.from_numpy(np.ascontiguousarray(pre, dtype=np.float32)).to(self.device)
            with self._lock, torch.inference_mode():
                logits = clf.out_proj(clf.dropout(torch.tanh(arr))) if seed else arr
                return self._proba(logits).cpu().numpy()

        return weight, bias, rest

    def _batches(self, signals: list[np.ndarray]) -> list[list[int]]:
        """Index groups for forward passes: similar lengths together; equal lengths only without a mask."""
        order = sorted(range(len(signals)), key=lambda i: -signals[i].size)
        groups: list[list[int]] = []
        if self.pads_with_mask:
            groups = [order]
        else:
            by_len: dict[int, list[int]] = {}
            for i in order:
                by_len.setdefault(signals[i].size, []).append(i)
            groups = list(by_len.values())
        cap = CPU_BATCH_SAMPLES if self.device == "cpu" else None
        batches: list[list[int]] = []
        for g in groups:
            start = 0
            while start < len(g):  # g is longest first: a batch's padded size is its first signal's
                size = self.batch_size
                if cap is not None:
                    size = max(1, min(size, cap // max(1, signals[g[start]].size)))
                batches.append(g[start:start + size])
                start += size
        return batches

    # ---- EmotionModel API
    def predict_proba(self, signals: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (len(signals), len(labels)) for 16 kHz float32 mono signals, batched."""
        if len(signals) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        prepared = [self._prepare(s) for s in signals]
        out = np.zeros((len(prepared), len(self.labels)), dtype=np.float32)
        torch = self._torch
        with self._lock, torch.inference_mode():
            for idx in self._batches(prepared):
                frames, valid, _ = self._encode([prepared[i] for i in idx])
                pooled = torch.stack([frames[b, :n].mean(dim=0) for b, n in enumerate(valid)])
                out[idx] = self._head(pooled).cpu().numpy()
        return out

    def frame_features(self, signal: np.ndarray) -> np.ndarray:
        """(T, D) float32 frames (one per ``frame_hop_s``) whose mean feeds ``head_proba``."""
        with self._lock, self._torch.inference_mode():
            frames, valid, _ = self._encode([self._prepare(signal)])
            return frames[0, : valid[0]].cpu().numpy().astype(np.float32)

    def head_proba(self, pooled: np.ndarray) -> np.ndarray:
        """(k, D) pooled frame vectors -> (k, len(labels)) probabilities."""
        arr = np.asarray(pooled, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None]
        torch = self._torch
        with self._lock, torch.inference_mode():
            return self._head(torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)).cpu().numpy()

    def frames_with_attention(self, signal: np.ndarray, sink: Callable[[Any], None]) -> np.ndarray:
        """``frame_features``, and from the same forward pass each encoder layer's (T, T) mean-over-heads
        attention (a float32 torch tensor on the model's device, rows sum to 1, valid while the call lasts)
        handed to ``sink`` in layer order. Returns the frames.

        The model runs its fast "sdpa" kernel, which returns no weights, everywhere else; for this call it
        switches to :data:`pipeline.attention.CAPTURE_ATTENTION` (eager arithmetic, each layer's maps reduced
        to their mean over heads as they are made; same weights, no copy) and back, under the model lock. Models whose
        attention does not go through transformers' AttentionInterface fall back to "eager" with
        ``output_attentions``.
        Measured on full-size HuBERT (int8), 10 s, 2 CPU threads: see ``python -m bench.explain_cost``.
        """
        torch = self._torch
        x = self._prepare(signal)
        modules = self._attention_modules()
        expected = len(modules) if modules else None
        with self._lock, torch.inference_mode():
            fed = [0]

            def take(maps: "torch.Tensor") -> None:
                fed[0] += 1
                sink(maps[0])

            previous = self.model.config._attn_implementation
            can_set = getattr(self.model, "_can_set_attn_implementation", None)  # private; absent in some versions
            if self._capture_ok is not False and attention.capture_registered() and callable(can_set) and can_set():
                try:
                    self.model.set_attn_implementation(attention.CAPTURE_ATTENTION)
                    with attention.capture_to(take):
                        frames, valid, _ = self._encode([x])
                finally:
                    self.model.set_attn_implementation(previous)
                if fed[0] and (expected is None or fed[0] == expected):
                    self._capture_ok = True
                    return frames[0, : valid[0]].cpu().numpy().astype(np.float32)
                self._capture_ok = False  # its attention bypasses AttentionInterface: eager from now on
                if fed[0]:
                    raise RuntimeError(f"emotion model {self.name}: attention of {fed[0]} of {expected} "
                                       "layers captured")
            switched = previous != "eager"
            if switched:
                self.model.set_attn_implementation("eager")
            try:
                frames, valid, maps = self._encode([x], attentions=True)
            finally:
                if switched:
                    self.model.set_attn_implementation(previous)
            for layer in maps[0]:
                sink(layer)
            return frames[0, : valid[0]].cpu().numpy().astype(np.float32)

    def frames_and_attentions(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frame_features`` and (layers, T, T) mean-over-heads attention (rows sum to 1), one forward pass
        (``frames_with_attention`` keeping every layer's map)."""
        layers: list[np.ndarray] = []
        frames = self.frames_with_attention(signal, lambda a: layers.append(a.cpu().numpy().copy()))
        return frames, np.stack(layers)

    def attentions(self, signal: np.ndarray) -> np.ndarray:
        """(layers, T, T) self-attention of each encoder layer, mean over heads (rows sum to 1)."""
        return self.frames_and_attentions(signal)[1]


def _receptive_field(kernels, strides) -> int:
    """Samples needed for one output frame of the convolutional feature encoder."""
    field, jump = 1, 1
    for k, s in zip(kernels, strides):
        field += (k - 1) * jump
        jump *= s
    return int(field)


# --------------------------------------------------------------------------------------------------
# Loading (which spec and quantisation: pipeline.model_resolution)
# --------------------------------------------------------------------------------------------------

def quantize_int8(model) -> bool:
    """Dynamic int8 quantisation of the transformer encoder's Linear layers, in place (CPU).

    The convolutional feature encoder, the feature projection and the classification head stay fp32.
    Returns False (and logs why) when this torch build cannot do it.
    """
    import torch
    from torch import nn

    try:
        from torch.ao.quantization import quantize_dynamic

        encoder = getattr(model, model.base_model_prefix).encoder
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(encoder, {nn.Linear}, dtype=torch.qint8, inplace=True)
        return True
    except Exception as exc:  # pragma: no cover - depends on the torch build
        log.warning("int8 quantisation unavailable (%s); running fp32", exc)
        return False


def _load_transformers(spec: str, device: str, quantize: str) -> HFEmotionModel:
    """Load a checkpoint (local dir or hub id) and wrap it; raises ModelUnavailableError when absent."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForAudioClassification

    local = resolution.looks_like_path(spec)
    if local and not (Path(spec) / "config.json").is_file():
        reason = "no such directory" if not Path(spec).exists() else "the folder has no config.json"
        raise resolution.unavailable_error(spec, reason)
    # A checkpoint in the local cache loads from it with no request to the hub (transformers would
    # otherwise ask the hub whether it changed); one that is not cached needs a reachable hub.
    offline = hub_offline() or (not local and not resolution.is_cached(spec) and not resolution.hub_reachable())
    kw: dict[str, Any] = {} if local else {"cache_dir": resolution.hub_cache(),
                                           "local_files_only": offline or resolution.is_cached(spec)}
    try:
        hf_config = AutoConfig.from_pretrained(spec, **kw)
    except Exception as exc:  # OSError, HFValidationError, connection errors
        reason = (("it is not in the local Hugging Face cache and downloads are off (HF_HUB_OFFLINE=1)" if hub_offline()
                   else "it is not in the local Hugging Face cache and the hub is not reachable")
                  if offline and not local else f"cannot read its configuration ({type(exc).__name__}: {exc})")
        raise resolution.unavailable_error(spec, reason) from exc

    archs = list(getattr(hf_config, "architectures", None) or [])
    seed = any(a.endswith("ForSpeechClassification") for a in archs)
    if seed and hf_config.model_type != "hubert":
        raise ValueError(f"emotion model {spec}: {archs[0]} over {hf_config.model_type!r} is not supported "
                         "(the seed head is supported on HuBERT encoders)")
    cls = _seed_classes()[1] if seed else AutoModelForAudioClassification
    try:
        model, info = cls.from_pretrained(spec, config=hf_config, output_loading_info=True, **kw)
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise ValueError(f"emotion model {spec}: architecture {archs or hf_config.model_type} is not an "
                             "audio-classification model") from exc
        raise
    except OSError as exc:
        raise resolution.unavailable_error(spec, f"its weights cannot be loaded ({exc})") from exc
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    waveform_encoder = (base is not None and hasattr(base, "feature_extractor")
                        and hasattr(model, "_get_feat_extract_output_lengths")
                        and hasattr(hf_config, "conv_stride"))
    if not waveform_encoder or not hasattr(model, "classifier") or (not seed and not hasattr(model, "projector")):
        raise ValueError(f"emotion model {spec}: {type(model).__name__} is not supported: EmotiVoice needs a "
                         "waveform encoder with a mean-pooled head (HubertForSpeechClassification, or "
                         "*ForSequenceClassification with projector + classifier: HuBERT, wav2vec2, WavLM, ...)")
    try:
        feature_extractor = AutoFeatureExtractor.from_pretrained(spec, **kw)
    except Exception:
        from transformers import Wav2Vec2FeatureExtractor

        log.warning("emotion model %s has no feature extractor config; using Wav2Vec2FeatureExtractor defaults",
                    spec)
        feature_extractor = Wav2Vec2FeatureExtractor()

    missing = list(info.get("missing_keys") or [])
    flagged = bool(getattr(hf_config, RANDOM_INIT_FLAG, False))
    trained = not missing and not flagged
    if not trained:
        why = (f"config flag {RANDOM_INIT_FLAG}" if flagged
               else f"weights newly initialised at load: {', '.join(sorted(missing)[:6])}")
        log.warning("emotion model %s is NOT trained (%s): its outputs are not emotions", spec, why)

    model.to(device)
    quantized = "none"
    if quantize == "int8" and device == "cpu" and quantize_int8(model):
        quantized = "int8"
    wrapped = HFEmotionModel(model, feature_extractor, name=spec, trained=trained, device=device,
                             quantized=quantized)
    absent = wrapped.absent_labels
    log.info("loaded emotion model %s (%s, labels %s%s%s, %s, %s)", spec, type(model).__name__, wrapped.labels,
             f", absent {absent}" if absent else "", f", extra {wrapped.extra_labels}" if wrapped.extra_labels
             else "", device, quantized)
    return wrapped


@shared_while_used  # one copy while held; pipeline.model_cache.MODEL_SETS is what keeps models loaded
def _load_cached(spec: str, device: str, quantize: str) -> EmotionModel:
    if spec == "compact":
        from pipeline.compact import load_compact  # written separately; imported lazily

        return load_compact()
    return _load_transformers(spec, device, quantize)


def clear_model_cache() -> None:
    """Forget every loaded model (tests; freeing memory): the process's model sets and the loaders' caches."""
    from pipeline.model_cache import MODEL_SETS

    MODEL_SETS.clear()
    _load_cached.cache_clear()
    from pipeline.whisper_emotion import clear_cache

    clear_cache()


def load_emotion_model(spec: str | None = None, config: Config | None = None) -> EmotionModel:
    """Load (or reuse) the emotion model named by ``spec``.

    Args:
        spec: 'auto' (``config.hubert_checkpoint`` when available locally or downloadable, else
            'whisper-head' when the Whisper base weights are installed, else 'compact'),
            'compact' (the shipped model), 'whisper-head' (the shipped head on Whisper encoder frames), a
            hub id, or a local directory saved with ``save_pretrained`` (or a whisper-head model folder).
            None means ``config.emotion_model``.
        config: device ('auto' | 'cpu' | 'cuda'), quantize ('auto' | 'none' | 'int8'), batch_size.

    Returns:
        An EmotionModel; calls with the same (resolved spec, device, quantisation) share one model while
        it is held (``pipeline.model_cache``: the model sets there keep models loaded, bounded).

    Raises:
        ModelUnavailableError: the model is neither local nor downloadable (names it and how to provide it).
        ValueError: an unsupported architecture or a bad device/quantize setting.
    """
    config = config or Config()
    spec = (spec or config.emotion_model or "auto").strip()
    resolved = resolution.resolve_emotion_spec(spec, config)
    if resolved == "compact":
        return _load_cached("compact", "cpu", "none")
    from pipeline.whisper_emotion import MODEL_ID as WHISPER_HEAD, get_whisper_head, is_whisper_head_dir

    if resolved == WHISPER_HEAD or is_whisper_head_dir(resolved):  # CPU (CTranslate2 int8) whatever the device
        return get_whisper_head(resolved, config)
    device = resolve_device(config.device)
    quantize = resolution.resolve_quantize(config.quantize, device)
    try:
        model = _load_cached(resolved, device, quantize)
    except ModelUnavailableError as exc:
        if spec.lower() != "auto":
            raise
        log.warning("%s; falling back to the compact model", exc)
        return _load_cached("compact", "cpu", "none")
    if isinstance(model, HFEmotionModel):
        model.batch_size = max(1, int(config.batch_size))
    return model
