"""Fine-tuning a HuBERT classifier (``emotivoice train --arch hubert``; CPU)."""

from __future__ import annotations

import time

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.training.manifests import LabelledSet, speaker_key
from pipeline.training.settings import EpochLog, MemberResult, TrainSettings
from pipeline.training.validation import BestCheckpoint
from pipeline.training.waves import progress_iter, progress_write


def _hubert_class():
    """``pipeline.emotion.HubertForSpeechClassification`` (the seed's head), or transformers' own."""
    try:
        from pipeline.emotion import HubertForSpeechClassification  # noqa: WPS433

        return HubertForSpeechClassification
    except ImportError:  # pipeline.emotion not available: the equivalent mean-pooled classifier
        from transformers import HubertForSequenceClassification

        return HubertForSequenceClassification


def train_hubert(waves, data: LabelledSet, present, val_spk, s: TrainSettings, base: str | None, progress: bool):
    import torch
    import torch.nn.functional as F

    if not base:
        raise ValueError("--arch hubert needs --base (a HuBERT checkpoint id or local path)")
    cls = _hubert_class()
    id2label = {i: lab for i, lab in enumerate(present)}
    try:
        model = cls.from_pretrained(base, num_labels=len(present), id2label=id2label,
                                    label2id={v: k for k, v in id2label.items()},
                                    ignore_mismatched_sizes=True)
    except OSError as exc:
        from pipeline.types import ModelUnavailableError

        raise ModelUnavailableError(str(base), f"cannot load the HuBERT base ({exc})") from exc
    try:
        from transformers import AutoFeatureExtractor

        model._emotivoice_feature_extractor = AutoFeatureExtractor.from_pretrained(base)
    except (OSError, ValueError):
        from transformers import Wav2Vec2FeatureExtractor

        model._emotivoice_feature_extractor = Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
            return_attention_mask=True)
    encoder = getattr(model, "hubert", None)
    if encoder is not None:
        if hasattr(encoder, "feature_extractor"):
            for p in encoder.feature_extractor.parameters():
                p.requires_grad = False
        if s.freeze_encoder:
            for p in encoder.parameters():
                p.requires_grad = False
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.hubert_lr, weight_decay=s.weight_decay)
    y_all = np.array([present.index(lab) for lab in data.labels])
    val_set = set(val_spk)
    tr = np.array([i for i, sp in enumerate(data.speakers) if sp not in val_set])
    va = np.array([i for i, sp in enumerate(data.speakers) if sp in val_set])
    rng = np.random.default_rng(s.seed)
    max_n = int(s.max_len_s * SAMPLE_RATE)

    def prep(idx, train_mode: bool):
        xs = []
        for i in idx:
            w = waves[i]
            if len(w) > max_n:
                st = int(rng.integers(0, len(w) - max_n + 1)) if train_mode else (len(w) - max_n) // 2
                w = w[st:st + max_n]
            w = (w - w.mean()) / (w.std() + 1e-7)
            xs.append(w)
        n = max(len(w) for w in xs)
        x = np.zeros((len(xs), n), dtype=np.float32)
        mask = np.zeros((len(xs), n), dtype=np.int64)
        for r, w in enumerate(xs):
            x[r, :len(w)] = w
            mask[r, :len(w)] = 1
        return torch.from_numpy(x), torch.from_numpy(mask)

    def logits_of(x, mask):
        out = model(input_values=x, attention_mask=mask)
        return out.logits if hasattr(out, "logits") else out[0]

    history: list[EpochLog] = []
    best = BestCheckpoint(s.patience)
    bs = max(1, min(s.batch_size, 8))
    for epoch in range(1, s.epochs + 1):
        t_ep = time.perf_counter()
        model.train()
        order = rng.permutation(tr)
        total, count = 0.0, 0
        for b in progress_iter(range(0, len(order), bs), progress, desc=f"hubert epoch {epoch}/{s.epochs}", leave=False):
            idx = order[b:b + bs]
            x, mask = prep(idx, True)
            loss = F.cross_entropy(logits_of(x, mask), torch.from_numpy(y_all[idx]),
                                   label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        uar = wa = None
        if len(va):
            model.eval()
            preds = []
            with torch.inference_mode():
                for b in range(0, len(va), bs):
                    x, mask = prep(va[b:b + bs], False)
                    preds += logits_of(x, mask).argmax(-1).tolist()
            preds = np.asarray(preds)
            yv = y_all[va]
            uar = float(np.mean([np.mean(preds[yv == c] == c) for c in np.unique(yv)]))
            wa = float(np.mean(preds == yv))
        train_loss = total / max(count, 1)
        history.append(EpochLog(epoch, train_loss, uar, wa, time.perf_counter() - t_ep))
        if progress:
            progress_write(f"hubert epoch {epoch}/{s.epochs}: loss {train_loss:.4f}"
                            + ("" if uar is None else f", val UAR {uar:.3f}"))
        if best.update(epoch, uar, model):
            break
    if best.state is not None:
        model.load_state_dict(best.state)
    model.eval()
    member = MemberResult(0, sorted({data.speakers[i] for i in tr}, key=speaker_key),
                          sorted(val_set, key=speaker_key), best.index, best.uar,
                          len(history), history)
    return model, [member]
