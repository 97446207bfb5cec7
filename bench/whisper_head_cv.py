"""Leave-actors-out cross-validation of the emotion head on Whisper encoder frames, against the compact model.

Same protocol as ``bench.compact_cv``: RAVDESS, 6 folds x 3 actors (1-3, 4-6, ..., 16-18), calm trained as
neutral, disgust dropped, scored on the held-out actors' original six-class clips at full length.
Inside each outer fold everything is chosen on the 15 training actors only (``pipeline.training.whisper_head``:
C by inner 5-group speaker CV, temperature fitted on the inner out-of-fold logits). Reported per fold:
UAR, WA, macro-F1, expected calibration error (15 bins) before and after temperature scaling, NLL.

Speaker normalisation variants (``--speaker-norm``):
  none  every clip scored alone (what a lone chunk gets);
  all   the head trained on per-speaker centred statistics; each test actor centred with the mean over all
        of that actor's scored clips (optimistic: 44 clips covering every emotion evenly);
  k<N>  as 'all' but each test clip centred with the mean of a random group of N clips of its actor
        (N chunks of one speaker in a file, as diarization gives them);
  same<N> as k<N> but each group holds clips of one emotion only (a speaker who is angry, or sad, for the
        whole file: the speaker mean then carries the emotion the normalisation should keep).

Usage::

    python -m bench.whisper_head_cv --extract          # encoder statistics of all 1080 clips, cached once
    python -m bench.whisper_head_cv --pooling meanstd --speaker-norm none,all,k4,k8
    python -m bench.whisper_head_cv --timing           # encoder cost: a 3 s chunk's own frames vs 30 s window
    python -m bench.whisper_head_cv --test-channel telephone,noise10 --augment 0   # studio-trained head, worse channels
    python -m bench.whisper_head_cv --test-channel telephone,noise10 --augment 2   # trained with channel augmentation
    python -m bench.whisper_head_cv --record pipeline/models/whisper_head --reuse --augment 2   # last such run

Encoder statistics are cached under ``artifacts/whisper_head/cache`` (git-ignored); results are appended
to ``artifacts/whisper_head/cv_results.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "datasets" / "ravdess"
ART = ROOT / "artifacts" / "whisper_head"
SIX = ("anger", "fear", "happiness", "sadness", "surprise", "neutral")


def _config(threads: int):
    from pipeline.config import Config

    return Config(whisper_dir=str(ART / "whisper"), whisper_threads=threads)


def load_all(data: Path, threads: int, progress: bool = False):
    """(LabelledSet with calm as neutral, six-class test labels by path, [mean h, mean h^2] per clip, the
    decoded clips)."""
    from pipeline.training import load_waves, read_manifest
    from pipeline.training.whisper_head import encoder_stats
    from pipeline.whisper_emotion import load_encoder

    ds = read_manifest(data, data / "manifest.csv", label_map={"calm": "neutral"})
    raw = read_manifest(data, data / "manifest.csv")
    waves = load_waves(ds.paths, progress=progress)
    enc = load_encoder("base", _config(threads))
    x = encoder_stats(waves, enc, cache_dir=ART / "cache", progress=progress)
    return ds, dict(zip(raw.paths, raw.labels)), x, waves


def channel_stats(ds, waves, six_by_path, threads: int, *, channels: list[str], copies: int,
                  progress: bool = False) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Encoder statistics of the six-class clips through each test channel ({name: (n, 2*dim)}, NaN rows for
    clips never scored), and of ``copies`` random augmented copies of every clip (cached like the clean ones)."""
    from pipeline.training.augment import channel
    from pipeline.training.whisper_head import augmented_stats, encoder_stats
    from pipeline.whisper_emotion import load_encoder

    if not channels and not copies:
        return {}, []
    enc = load_encoder("base", _config(threads))
    scored = [i for i, p in enumerate(ds.paths) if p in six_by_path]
    out: dict[str, np.ndarray] = {}
    for name in channels:
        part = encoder_stats([channel(waves[i], name, seed=i) for i in scored], enc, cache_dir=ART / "cache",
                             progress=progress)
        full = np.full((len(ds), part.shape[1]), np.nan, dtype=np.float32)
        full[scored] = part
        out[name] = full
    return out, augmented_stats(waves, enc, copies, cache_dir=ART / "cache", progress=progress)


def compact_fold_uar(folds: int) -> list[float] | None:
    """The shipped compact model's per-fold UAR (mean over its recorded seeds), same folds."""
    try:
        cv = json.loads((ROOT / "pipeline/models/compact/config.json").read_text())["cross_validation"]
    except (OSError, ValueError, KeyError):
        return None
    out = []
    for f in range(1, folds + 1):
        u = [r["uar"] for r in cv["folds"] if r["fold"] == f]
        out.append(float(np.mean(u)) if u else float("nan"))
    return out


def _centre_test(stats: np.ndarray, spk: np.ndarray, ref: np.ndarray, mode: str, rng,
                 emotions: np.ndarray | None = None) -> np.ndarray:
    if mode.startswith("same"):  # groups of N clips of one actor *and one emotion*: a speaker who stays angry
        out = stats.copy()
        keys = np.array([f"{a}|{e}" for a, e in zip(spk, emotions)])
        for key in np.unique(keys):
            idx = np.flatnonzero(keys == key)
            out[idx] = _centre_test(stats[idx], spk[idx], ref, "k" + mode[4:], rng)
        return out
    out = stats.copy()
    for s in np.unique(spk):
        idx = np.flatnonzero(spk == s)
        if mode == "all":
            out[idx] = stats[idx] - stats[idx].mean(0) + ref
            continue
        k = min(int(mode[1:]), len(idx))
        perm = rng.permutation(idx)
        for g in range(0, len(perm), k):
            grp = perm[g:g + k]
            if len(grp) < k and g > 0:  # a short tail joins random full-size groups' clips
                grp = np.concatenate([grp, rng.choice(perm[:g], k - len(grp), replace=False)])
                out[perm[g:g + k]] = stats[perm[g:g + k]] - stats[grp].mean(0) + ref
                continue
            out[grp] = stats[grp] - stats[grp].mean(0) + ref
    return out


def ece_floor(proba: np.ndarray, draws: int = 200, seed: int = 0) -> float:
    """The ECE a *perfectly calibrated* model with these probabilities would show on this many clips: labels
    drawn from the probabilities themselves, mean over ``draws``. What a finite test set adds by chance."""
    from pipeline.training.whisper_head import expected_calibration_error

    rng = np.random.default_rng(seed)
    p = np.asarray(proba, dtype=np.float64)
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    eces = []
    for _ in range(draws):
        y = np.minimum((rng.random((len(p), 1)) > cum).sum(axis=1), p.shape[1] - 1)
        eces.append(expected_calibration_error(p, y))
    return float(np.mean(eces))


def run_cv(ds, six_by_path, x, *, pooling: str, norm: str, folds: int, seed: int, c_grid,
           channels: dict[str, np.ndarray] | None = None, augmented: list[np.ndarray] | None = None) -> dict:
    from pipeline.training import metrics_from_proba
    from pipeline.training.whisper_head import (HeadRecipe, expected_calibration_error, fit_head, nll,
                                                speaker_centred, stats_for)

    stats_all = stats_for(x, pooling)
    spk = np.array(ds.speakers)
    labels = list(SIX)
    y = np.array([labels.index(lab) for lab in ds.labels])
    actors = ds.speaker_set()
    groups = [actors[i * len(actors) // folds:(i + 1) * len(actors) // folds] for i in range(folds)]
    rng = np.random.default_rng(seed)
    rows, probas = [], []
    for f, test_actors in enumerate(groups, 1):
        te_all = np.isin(spk, test_actors)
        tr = ~te_all
        te = np.array([te_all[i] and ds.paths[i] in six_by_path for i in range(len(ds))])
        s_tr, y_tr, spk_tr = stats_all[tr], y[tr], spk[tr]
        for a in augmented or []:  # augmented copies of the training actors' clips, same speakers
            s_tr = np.concatenate([s_tr, stats_for(a, pooling)[tr]])
            y_tr, spk_tr = np.concatenate([y_tr, y[tr]]), np.concatenate([spk_tr, spk[tr]])
        if norm != "none":
            s_tr = speaker_centred(s_tr, spk_tr)
        recipe = HeadRecipe(pooling=pooling, speaker_norm=norm != "none", seed=seed, c_grid=tuple(c_grid))
        t0 = time.perf_counter()
        fit = fit_head(s_tr, y_tr, spk_tr, labels, recipe, scored=np.arange(len(y_tr)) < int(tr.sum()))
        s_te = stats_all[te]
        y_true = [six_by_path[ds.paths[i]] for i in np.flatnonzero(te)]
        if norm != "none":
            s_te = _centre_test(s_te, spk[te], fit.center, norm, rng, np.array(y_true))
        yi = np.array([labels.index(t) for t in y_true])
        p_raw, p_cal = fit.proba(s_te, calibrated=False), fit.proba(s_te)
        m = metrics_from_proba(p_cal, y_true, labels)
        row = {"fold": f, "test_actors": test_actors, "n": m.n, "uar": round(m.uar, 4), "wa": round(m.wa, 4),
               "macro_f1": round(m.macro_f1, 4), "per_class": {k: None if v is None else round(v, 4)
                                                                for k, v in m.per_class.items()},
               "c": fit.c, "temperature": round(fit.temperature, 4), "inner_uar": fit.inner.get("uar"),
               "ece_raw": round(expected_calibration_error(p_raw, yi), 4),
               "ece": round(expected_calibration_error(p_cal, yi), 4),
               "ece_floor": round(ece_floor(p_cal, seed=f), 4),
               "nll_raw": round(nll(p_raw, yi), 4), "nll": round(nll(p_cal, yi), 4),
               "fit_s": round(time.perf_counter() - t0, 1)}
        for name, xc in (channels or {}).items():  # the same held-out clips through a worse channel
            s_ch = stats_for(xc, pooling)[te]
            if norm != "none":
                s_ch = _centre_test(s_ch, spk[te], fit.center, norm, rng, np.array(y_true))
            p_ch = fit.proba(s_ch)
            row[f"uar_{name}"] = round(metrics_from_proba(p_ch, y_true, labels).uar, 4)
            row[f"ece_{name}"] = round(expected_calibration_error(p_ch, yi), 4)
        rows.append(row)
        probas.append((p_cal, yi))
        print(f"  fold {f} actors {test_actors}: UAR {row['uar']:.3f} ECE {row['ece_raw']:.3f}->{row['ece']:.3f} "
              f"(floor {row['ece_floor']:.3f}) "
              f"NLL {row['nll_raw']:.3f}->{row['nll']:.3f} C {fit.c} T {fit.temperature:.2f} "
              f"(inner UAR {row['inner_uar']})", flush=True)
    pooled_p = np.concatenate([p for p, _ in probas])
    pooled_y = np.concatenate([yy for _, yy in probas])
    u = np.array([r["uar"] for r in rows])
    return {"pooling": pooling, "speaker_norm": norm, "seed": seed, "c_grid": list(c_grid), "folds": rows,
            "uar_mean": round(float(u.mean()), 4), "uar_std": round(float(u.std(ddof=1)), 4),
            "wa_mean": round(float(np.mean([r["wa"] for r in rows])), 4),
            "macro_f1_mean": round(float(np.mean([r["macro_f1"] for r in rows])), 4),
            "ece_mean": round(float(np.mean([r["ece"] for r in rows])), 4),
            "ece_raw_mean": round(float(np.mean([r["ece_raw"] for r in rows])), 4),
            "ece_pooled": round(expected_calibration_error(pooled_p, pooled_y), 4),
            "ece_floor_mean": round(float(np.mean([r["ece_floor"] for r in rows])), 4),
            "ece_floor_pooled": round(ece_floor(pooled_p), 4),
            "nll_mean": round(float(np.mean([r["nll"] for r in rows])), 4),
            "augmented_copies": len(augmented or []),
            **{f"{k}_mean": round(float(np.mean([r[k] for r in rows])), 4)
               for name in (channels or {}) for k in (f"uar_{name}", f"ece_{name}")}}


def timing(data: Path, threads: int, repeats: int = 10) -> dict:
    """Median encoder time for a 3 s chunk's own frames vs one padded 30 s window, and the head's cost."""
    import ctranslate2

    from pipeline.audio import decode_audio
    from pipeline.whisper_emotion import load_encoder, load_whisper_head

    enc = load_encoder("base", _config(threads))
    x = decode_audio(data / "Actor_02" / "03-01-05-02-01-01-02.flac").samples[: 3 * 16000]
    mel = enc.mel(x)
    padded = np.zeros((1, mel.shape[0], 3000), np.float32)
    padded[0, :, : mel.shape[1]] = mel
    out = {"threads": threads}

    def med(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return 1000 * float(np.median(ts))

    out["own_frames_3s_ms"] = med(lambda: enc.frames(x))
    out["padded_30s_window_ms"] = med(lambda: enc.model.encode(ctranslate2.StorageView.from_array(padded),
                                                               to_cpu=True))
    model_dir = ROOT / "pipeline/models/whisper_head"
    if (model_dir / "config.json").is_file():
        model = load_whisper_head(model_dir, encoder=enc)
        out["predict_3s_ms"] = med(lambda: model.predict_proba([x]))
        frames = model.frame_features(x)
        out["head_only_ms"] = med(lambda: model.head_proba(frames.mean(0, keepdims=True)))
    out["realtime_factor_own_frames"] = round(3000 / out["own_frames_3s_ms"], 1)
    print(json.dumps(out, indent=2))
    return out


def record(model_dir: Path, result: dict, timing_row: dict | None) -> None:
    """Write one CV result (and the compact model's per-fold UAR on the same folds) into config.json."""
    cfg = model_dir / "config.json"
    doc = json.loads(cfg.read_text())
    compact = compact_fold_uar(len(result["folds"]))
    doc["cross_validation"] = {
        "protocol": "leave-actors-out, 6 folds of 3 actors (RAVDESS actors 1-18 in order); C and temperature "
                    "chosen on each fold's 15 training actors by inner 5-group speaker CV; scored on the held-out "
                    "actors' six-emotion clips, full length; calm trained as neutral, disgust dropped",
        **result, "compact_fold_uar": compact,
        "compact_uar_mean": None if compact is None else round(float(np.mean(compact)), 4)}
    if timing_row:
        doc["timing"] = timing_row
    cfg.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"recorded in {cfg}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(RAVDESS))
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--pooling", default="meanstd", help="comma-separated: mean, meanstd")
    ap.add_argument("--speaker-norm", default="none", help="comma-separated: none, all, k<N>")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--c-grid", default="0.003,0.01,0.03,0.1,0.3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test-channel", default="", help="comma-separated test channels the held-out clips are "
                                                         "also scored through: telephone, noise10")
    ap.add_argument("--augment", type=int, default=0, metavar="N",
                    help="train on N random channel-augmented copies of each training clip besides the clean one")
    ap.add_argument("--extract", action="store_true", help="compute (cache) the encoder statistics, then exit")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--record", default=None, metavar="MODEL_DIR",
                    help="write the (single) configuration's CV into MODEL_DIR/config.json")
    ap.add_argument("--reuse", action="store_true",
                    help="--record: take the last saved run of this configuration from --out instead of rerunning")
    ap.add_argument("--out", default=str(ART / "cv_results.jsonl"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = Path(args.data)
    if args.timing:
        timing(data, args.threads)
        return 0
    if args.record and args.reuse:
        saved = [json.loads(line) for line in Path(args.out).read_text().splitlines() if line.strip()]
        match = [r for r in saved if (r["pooling"], r["speaker_norm"], r["seed"], r.get("augmented_copies", 0))
                 == (args.pooling, args.speaker_norm, args.seed, args.augment)]
        if not match:
            raise SystemExit(f"--reuse: no {args.pooling}/{args.speaker_norm} seed {args.seed} --augment {args.augment} "
                             f"run in {args.out}")
        record(Path(args.record), match[-1], None)
        return 0
    t0 = time.perf_counter()
    ds, six_by_path, x, waves = load_all(data, args.threads, progress=args.extract)
    if args.extract:
        print(f"encoder statistics of {len(ds)} clips: {x.shape} in {time.perf_counter() - t0:.0f} s")
        return 0
    channels, augmented = channel_stats(ds, waves, six_by_path, args.threads, progress=True, copies=args.augment,
                                        channels=[c for c in args.test_channel.split(",") if c])
    compact = compact_fold_uar(args.folds)
    if compact:
        print(f"compact (shipped) per-fold UAR: {np.round(compact, 3).tolist()} mean {np.mean(compact):.3f}")
    results = []
    for pooling in args.pooling.split(","):
        for norm in args.speaker_norm.split(","):
            print(f"[{pooling} / speaker-norm {norm}]", flush=True)
            res = run_cv(ds, six_by_path, x, pooling=pooling, norm=norm, folds=args.folds, seed=args.seed,
                         c_grid=[float(c) for c in args.c_grid.split(",")], channels=channels,
                         augmented=augmented)
            wins = None if not compact else sum(r["uar"] > c for r, c in zip(res["folds"], compact))
            res["beats_compact_folds"] = wins
            print(f"[{pooling} / speaker-norm {norm}] UAR {res['uar_mean']:.3f} +- {res['uar_std']:.3f}, "
                  f"ECE {res['ece_raw_mean']:.3f} -> {res['ece_mean']:.3f} (floor {res['ece_floor_mean']:.3f}; pooled "
                  f"{res['ece_pooled']:.3f}, floor {res['ece_floor_pooled']:.3f}), "
                  f"NLL {res['nll_mean']:.3f}; better than compact on {wins} of {args.folds} folds"
                  + "".join(f"; {name}: UAR {res[f'uar_{name}_mean']:.3f} ECE {res[f'ece_{name}_mean']:.3f}"
                            for name in channels)
                  + (f" (trained with {args.augment} augmented cop{'y' if args.augment == 1 else 'ies'})"
                     if args.augment else ""), flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(res) + "\n")
            results.append(res)
    if args.record:
        if len(results) != 1:
            raise SystemExit("--record takes exactly one --pooling and one --speaker-norm")
        record(Path(args.record), results[0], None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
