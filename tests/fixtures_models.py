"""Tiny randomly initialised emotion checkpoints, built from configs (no downloads) and saved with
``save_pretrained`` into a session temp dir, so every loader path runs offline in well under a second.

All of them keep the real models' convolutional front end (7 layers, kernels 10,3,3,3,3,2,2, strides
5,2,2,2,2,2,2: one frame per 20 ms, 400-sample receptive field) with 16 channels instead of 512, and a
2-layer, 2-head, 32-wide transformer. Every config carries ``emotivoice_random_init: true`` so loaders
flag the outputs as not-emotions. The head weights are scaled up so that probabilities differ between
clips (a ~uniform output would let equality tests pass vacuously).

Fixtures:
    tiny_hubert_dir: the seed form, ``HubertForSpeechClassification`` (mean pooling, classifier.dense /
        classifier.out_proj), labels Anger/Fear/Happiness/Neutral/Sadness/Surprise, HuBERT-base style
        group-norm front end and a feature extractor without attention mask.
    tiny_superb_dir: ``HubertForSequenceClassification`` like superb/hubert-base-superb-er (weighted
        layer sum, projector, labels neu/hap/ang/sad), group norm, no attention mask.
    tiny_extra_label_dir: like HuBERT-large SUPERB (layer-norm front end, stable layer norm, feature
        extractor with attention mask) with labels neu/hap/ang/sad/dis ('dis' is outside the six).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

SEED_LABELS = ("Anger", "Fear", "Happiness", "Neutral", "Sadness", "Surprise")
SUPERB_LABELS = ("neu", "hap", "ang", "sad")

TINY_HUBERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    classifier_proj_size=16,
)


def build_tiny_checkpoint(
    out_dir: str | Path,
    *,
    form: str = "seed",
    labels: Sequence[str] = SEED_LABELS,
    layer_norm: bool = False,
    random_init_flag: bool = True,
    headless: bool = False,
    seed: int = 0,
) -> Path:
    """Build and save a tiny random emotion checkpoint (model + Wav2Vec2FeatureExtractor).

    Args:
        out_dir: folder to write (created).
        form: 'seed' (HubertForSpeechClassification) or 'superb' (HubertForSequenceClassification with a
            weighted layer sum).
        labels: id2label in output order.
        layer_norm: HuBERT-large style front end (layer norm, stable layer norm, conv bias) whose feature
            extractor returns an attention mask; otherwise HuBERT-base style (group norm, no mask).
        random_init_flag: write ``emotivoice_random_init: true`` into the config.
        headless: save only the encoder weights (the head is then missing at load), config unchanged.
        seed: torch seed for the weights.
    """
    import torch
    from transformers import HubertConfig, HubertForSequenceClassification, Wav2Vec2FeatureExtractor

    from pipeline.emotion import HubertForSpeechClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra: dict = {"emotivoice_random_init": True} if random_init_flag else {}
    if layer_norm:
        extra.update(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
    cfg = HubertConfig(
        **TINY_HUBERT,
        **extra,
        id2label={i: lab for i, lab in enumerate(labels)},
        label2id={lab: i for i, lab in enumerate(labels)},
        pooling_mode="mean",
        use_weighted_layer_sum=(form == "superb"),
    )
    torch.manual_seed(seed)
    if form == "seed":
        model = HubertForSpeechClassification(cfg)
        head = {"classifier.dense.weight": 0.2, "classifier.out_proj.weight": 0.5}
    elif form == "superb":
        model = HubertForSequenceClassification(cfg)
        head = {"projector.weight": 0.3, "classifier.weight": 1.0}
        with torch.no_grad():
            model.layer_weights.copy_(torch.randn(cfg.num_hidden_layers + 1))
    else:
        raise ValueError(f"unknown form {form!r}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, std in head.items():
            params[name].normal_(0.0, std)
    if headless:
        model.hubert.save_pretrained(out)
        cfg.architectures = [type(model).__name__]
        cfg.save_pretrained(out)
    else:
        model.save_pretrained(out)
    Wav2Vec2FeatureExtractor(return_attention_mask=layer_norm, do_normalize=True).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory) -> Path:
    """Seed-form tiny HuBERT (labels Anger..Surprise), random weights flagged as such."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_hubert"), form="seed", labels=SEED_LABELS)


@pytest.fixture(scope="session")
def tiny_superb_dir(tmp_path_factory) -> Path:
    """superb/hubert-base-superb-er shaped tiny model (labels neu/hap/ang/sad), random weights flagged."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_superb"), form="superb", labels=SUPERB_LABELS,
                                 seed=1)


@pytest.fixture(scope="session")
def tiny_extra_label_dir(tmp_path_factory) -> Path:
    """HuBERT-large SUPERB shaped tiny model with a label outside the six ('dis'), padding + mask."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_extra"), form="superb",
                                 labels=SUPERB_LABELS + ("dis",), layer_norm=True, seed=2)
