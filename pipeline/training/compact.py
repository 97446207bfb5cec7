"""The compact model's trainer: waveform augmentation, SpecAugment, one network per ensemble member
(gradient-trained 'tdnn'/'cnn2d' members, the full-batch 'stats' member), stacked into one ensemble."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from typing import Sequence

import numpy as np

from pipeline.runtime import SAMPLE_RATE
from pipeline.training.manifests import LabelledSet, speaker_key
from pipeline.training.settings import EpochLog, MemberResult, TrainSettings, seed_everything
from pipeline.training.validation import BestCheckpoint
from pipeline.training.waves import progress_iter, progress_write, speech_bounds

log = logging.getLogger(__name__)


class _Augmenter:
    """Random crops, speed perturbation, gain and noise on waveforms (NumPy, per example)."""

    def __init__(self, waves: Sequence[np.ndarray], bounds: Sequence[tuple[int, int]], s: TrainSettings,
                 rng: np.random.Generator):
        self.waves, self.bounds, self.s, self.rng = waves, bounds, s, rng
        self._bank: list[np.ndarray] | None = None

    def batch(self, idx: Sequence[int]) -> np.ndarray:
        s, rng = self.s, self.rng
        sr = SAMPLE_RATE
        speeds = rng.uniform(*s.speed, size=len(idx)) if s.speed[1] > s.speed[0] else np.full(len(idx), s.speed[0])
        # One crop length per batch (no padding); never longer than the shortest (speed-changed) clip.
        avail = min(len(self.waves[i]) / sp for i, sp in zip(idx, speeds))
        n = int(min(rng.uniform(*s.crop_s) * sr, avail))
        n = max(n, min(int(0.5 * sr), int(avail)))
        out = np.empty((len(idx), n), dtype=np.float32)
        for row, (i, sp) in enumerate(zip(idx, speeds)):
            out[row] = self._example(i, sp, n)
        return out

    def _example(self, i: int, speed: float, n: int) -> np.ndarray:
        s, rng = self.s, self.rng
        w = self.waves[i]
        a, b = self.bounds[i]
        src_n = int(math.ceil(n * speed)) + 1
        src_n = min(src_n, len(w))
        if rng.random() < s.speech_crop_prob and b - a > 0:
            centre = rng.uniform(a, b)
            start = int(np.clip(centre - src_n / 2, 0, len(w) - src_n))
        else:
            start = int(rng.integers(0, len(w) - src_n + 1))
        seg = w[start:start + src_n]
        # Speed perturbation by linear-interpolation resampling (tempo and pitch change together).
        pos = np.arange(n, dtype=np.float64) * speed
        pos = np.minimum(pos, len(seg) - 1)
        x = np.interp(pos, np.arange(len(seg)), seg).astype(np.float32)
        x *= np.float32(10 ** (rng.uniform(-s.gain_db, s.gain_db) / 20))
        if rng.random() < s.noise_prob:
            x = x + self._noise(x, rng.uniform(*s.snr_db))
        return x

    def _noise(self, x: np.ndarray, snr_db: float) -> np.ndarray:
        """White, pink (1/f) or brown (1/f^2) noise at ``snr_db`` below the crop's power."""
        rng = self.rng
        if self._bank is None:
            self._bank = _noise_bank(np.random.default_rng(int(rng.integers(2 ** 31))))
        bank = self._bank[int(rng.integers(0, len(self._bank)))]
        n = len(x)
        if n > len(bank):
            bank = np.tile(bank, n // len(bank) + 1)
        start = int(rng.integers(0, len(bank) - n + 1))
        noise = bank[start:start + n]
        p_sig = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-20
        return (noise * math.sqrt(p_sig / p_noise / 10 ** (snr_db / 10))).astype(np.float32)


def _noise_bank(rng: np.random.Generator, seconds: float = 20.0) -> list[np.ndarray]:
    """20 s each of white, pink and brown noise (coloured in the frequency domain)."""
    n = int(seconds * SAMPLE_RATE)
    out = []
    for colour in range(3):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / f ** (0.5 * colour), n)
        out.append((x / (x.std() + 1e-12)).astype(np.float32))
    return out


def _spec_augment(feats, s: TrainSettings, gen):
    """Zero (= the utterance mean after normalisation) random frequency bands and time spans, in place."""
    import torch

    b, m, t = feats.shape
    for _ in range(s.freq_masks):
        w = torch.randint(0, s.freq_mask_bins + 1, (b,), generator=gen)
        f0 = (torch.rand(b, generator=gen) * (m - w)).long()
        ar = torch.arange(m)
        mask = (ar[None] >= f0[:, None]) & (ar[None] < (f0 + w)[:, None])
        feats.masked_fill_(mask[:, :, None].to(feats.device), 0.0)
    tw_max = max(1, int(s.time_mask_frac * t))
    for _ in range(s.time_masks):
        w = torch.randint(0, tw_max + 1, (b,), generator=gen)
        t0 = (torch.rand(b, generator=gen) * (t - w).clamp(min=0)).long()
        ar = torch.arange(t)
        mask = (ar[None] >= t0[:, None]) & (ar[None] < (t0 + w)[:, None])
        feats.masked_fill_(mask[:, None, :].to(feats.device), 0.0)
    return feats


def _compact_config(present: list[str], extras: list[str], s: TrainSettings, members: Sequence[str]):
    return replace(s.compact, channels=tuple(s.compact.channels), members=tuple(members),
                   labels=tuple(present), train_labels=tuple(present) + tuple(extras))


def _val_uar_compact(net, waves: Sequence[np.ndarray], y: np.ndarray, n_out: int) -> tuple[float, float]:
    """UAR and WA of a one-member net on full clips (eval mode, one clip at a time)."""
    import torch

    from pipeline.compact import pad_signal

    net.eval()
    preds = []
    dev = next(net.parameters()).device
    with torch.inference_mode():
        for w in waves:
            x = torch.from_numpy(pad_signal(w, net.cfg))[None].to(dev)
            preds.append(int(net.proba(net.wave_frames(x).mean(2)).argmax(1)))
    net.train()
    preds = np.asarray(preds)
    mask = y < n_out
    recalls = [float(np.mean(preds[mask & (y == c)] == c)) for c in range(n_out) if np.any(mask & (y == c))]
    return float(np.mean(recalls)), float(np.mean(preds[mask] == y[mask]))


def train_compact(waves, data: LabelledSet, present, extras, plans, s: TrainSettings, progress: bool):
    from pipeline.compact import CompactEmotionModel, build_net

    classes = list(present) + list(extras)
    y_all = np.array([classes.index(lab) for lab in data.labels])
    bounds = [speech_bounds(w) for w in waves]
    members: list[MemberResult] = []
    states = []
    for m, val_spk in enumerate(plans):
        seed = s.seed * 1000 + m
        seed_everything(seed)
        val_set = set(val_spk)
        tr = np.array([i for i, sp in enumerate(data.speakers) if sp not in val_set])
        va = np.array([i for i, sp in enumerate(data.speakers) if sp in val_set])
        kind = s.members[m]
        net = build_net(_compact_config(present, extras, s, (kind,)))
        fit = _fit_stats_member if kind == "stats" else _fit_member
        state, result = fit(net, waves, y_all, bounds, tr, va, len(present), s, seed,
                            desc=f"member {m + 1}/{len(plans)} ({kind})", progress=progress)
        result.member = m
        result.train_speakers = sorted({data.speakers[i] for i in tr}, key=speaker_key)
        result.val_speakers = sorted(val_set, key=speaker_key)
        members.append(result)
        states.append(state)
    # Stack the members into one ensemble network.
    cfg = _compact_config(present, extras, s, s.members)
    ens = build_net(cfg)
    merged = {}
    for m, st in enumerate(states):
        for k, v in st.items():
            if k.startswith("trunks.0."):
                merged[f"trunks.{m}." + k[len("trunks.0."):]] = v
            elif k.startswith("heads.0."):
                merged[f"heads.{m}." + k[len("heads.0."):]] = v
            else:
                merged[k] = v
    ens.load_state_dict(merged)
    return CompactEmotionModel(ens, cfg, name="compact", trained=True), members


def _fit_member(net, waves, y_all, bounds, tr, va, n_out, s: TrainSettings, seed: int, *, desc: str,
                progress: bool):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    aug = _Augmenter(waves, bounds, s, rng)
    n_cls = len(net.cfg.train_labels)
    counts = np.bincount(y_all[tr], minlength=n_cls).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_cls, 0.0)
    dev = torch.device(s.device)
    net.to(dev)
    class_w = torch.tensor(weights, dtype=torch.float32, device=dev)
    steps_per_epoch = max(1, math.ceil(len(tr) / s.batch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.epochs * steps_per_epoch,
                                                pct_start=0.15, anneal_strategy="cos")
    history: list[EpochLog] = []
    best = BestCheckpoint(s.patience)
    va_waves = [waves[i] for i in va]
    va_y = y_all[va] if len(va) else np.zeros(0, dtype=int)
    net.train()
    for epoch in range(1, s.epochs + 1):
        t_ep = time.perf_counter()
        order = rng.permutation(tr)
        total, count = 0.0, 0
        batches = [order[i:i + s.batch_size] for i in range(0, len(order), s.batch_size)]
        bar = progress_iter(batches, progress, desc=f"{desc} epoch {epoch}/{s.epochs}", leave=False)
        for idx in bar:
            x = torch.from_numpy(aug.batch(idx)).to(dev)
            target = torch.from_numpy(y_all[idx]).to(dev)
            feats, db = net.features(x)
            feats = _spec_augment(feats, s, gen)
            if s.mixup > 0 and len(idx) > 1:
                lam = float(rng.beta(s.mixup, s.mixup))
                perm = torch.randperm(len(idx), generator=gen).to(dev)
                feats = lam * feats + (1 - lam) * feats[perm]
            logits = net.member_logits(net.frames(feats, db, x).mean(2))[0]
            loss = F.cross_entropy(logits, target, weight=class_w, label_smoothing=s.label_smoothing)
            if s.mixup > 0 and len(idx) > 1:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits, target[perm], weight=class_w,
                                                                label_smoothing=s.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        train_loss = total / max(count, 1)
        if len(va):
            uar, wa = _val_uar_compact(net, va_waves, va_y, n_out)
        else:
            uar = wa = None
        history.append(EpochLog(epoch, train_loss, uar, wa, time.perf_counter() - t_ep))
        log.info("%s epoch %d: loss %.4f val UAR %s", desc, epoch, train_loss,
                 "-" if uar is None else f"{uar:.3f}")
        if progress:
            progress_write(f"{desc} epoch {epoch}/{s.epochs}: loss {train_loss:.4f}"
                            + ("" if uar is None else f", val UAR {uar:.3f}, WA {wa:.3f}"))
        if best.update(epoch, uar, net):
            break
    net.to("cpu").eval()
    return best.state, MemberResult(0, [], [], best.index, best.uar,
                                    len(history), history)


def _fit_stats_member(net, waves, y_all, bounds, tr, va, n_out, s: TrainSettings, seed: int, *, desc: str,
                      progress: bool):
    """Fit a 'stats' member: centre/scale its frame features, then train its MLP head full-batch.

    Each training clip contributes its full-length pooled vector plus ``stats_views`` augmented crops
    (same augmentation as the neural members, minus SpecAugment).
    """
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    aug = _Augmenter(waves, bounds, s, rng)
    trunk, head = net.trunks[0], net.heads[0]
    n_cls = len(net.cfg.train_labels)
    t0 = time.perf_counter()

    dev = torch.device(s.device)  # the trunk's signal processing may run on a GPU; the MLP fit stays here
    net.to(dev)

    def pooled_z(batch_waves):
        with torch.inference_mode():
            return [trunk.z(net.features(torch.from_numpy(w)[None].to(dev))[1])[0].cpu() for w in batch_waves]

    # 1) centring/scaling of z from the training clips' frames.
    from pipeline.compact import pad_signal

    zs = pooled_z([pad_signal(waves[i], net.cfg) for i in tr])
    allz = torch.cat(zs, dim=1)
    with torch.no_grad():
        trunk.z_center.copy_(allz.mean(1))
        trunk.z_scale.copy_(allz.std(1) + 1e-3)

    def pooled(wave_list):
        out = []
        with torch.inference_mode():
            for w in wave_list:
                x = torch.from_numpy(pad_signal(w, net.cfg))[None].to(dev)
                out.append(net.wave_frames(x).mean(2)[0].cpu())
        return torch.stack(out)

    views, ys = [pooled([waves[i] for i in tr])], [y_all[tr]]
    for _ in range(s.stats_views):
        for start in range(0, len(tr), s.batch_size):
            idx = tr[start:start + s.batch_size]
            views.append(pooled(list(aug.batch(idx))))
            ys.append(y_all[idx])
    x_va = pooled([waves[i] for i in va]) if len(va) else None
    net.to("cpu")
    x_tr = torch.cat(views)
    y_tr = torch.from_numpy(np.concatenate(ys))
    with torch.no_grad():
        head.feat_mean.zero_()
        head.feat_std.fill_(1.0)
        feats = head.features(x_tr)
        head.feat_mean.copy_(feats.mean(0))
        head.feat_std.copy_(feats.std(0) + 1e-3)
    counts = np.bincount(y_tr.numpy(), minlength=n_cls).astype(np.float64)
    class_w = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_cls, 0.0),
                           dtype=torch.float32)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=s.weight_decay * 10)
    history: list[EpochLog] = []
    best = BestCheckpoint(None)
    chunk = max(1, s.stats_steps // 20)  # 20 checkpoints ("epochs") over the steps
    head.train()
    for step in range(1, s.stats_steps + 1):
        loss = F.cross_entropy(head(x_tr), y_tr, weight=class_w, label_smoothing=s.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % chunk == 0 or step == s.stats_steps:
            uar = wa = None
            if x_va is not None:
                head.eval()
                with torch.no_grad():
                    pred = head(x_va)[:, :n_out].argmax(1).numpy()
                head.train()
                yv = y_all[va]
                mask = yv < n_out
                uar = float(np.mean([np.mean(pred[mask & (yv == c)] == c) for c in range(n_out)
                                     if np.any(mask & (yv == c))]))
                wa = float(np.mean(pred[mask] == yv[mask]))
            history.append(EpochLog(len(history) + 1, float(loss.detach()), uar, wa, time.perf_counter() - t0))
            best.update(len(history), uar, net)
    if progress:
        progress_write(f"{desc}: {len(history)} checkpoints, loss {history[-1].train_loss:.4f}"
                        + ("" if best.uar is None else f", best val UAR {best.uar:.3f}"))
    net.eval()
    return best.state, MemberResult(0, [], [], best.index, best.uar,
                                    len(history), history)
