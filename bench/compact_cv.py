"""Leave-actors-out cross-validation of the compact emotion model on RAVDESS (reproducible).

Each fold holds out a group of actors (default 6 folds x 3 actors: 1-3, 4-6, ... 16-18), trains the
compact recipe of ``pipeline.training`` on the other actors (its own inner validation included, exactly as
``emotivoice train`` does) and scores the held-out actors' six-class clips, full length, as analysis does.
Prints per-fold UAR/WA/macro-F1 (ensemble and each member), mean and standard deviation, and appends one
JSON line per run to ``--out``.

Usage (a few configurations, a couple of seeds each)::

    python -m bench.compact_cv --tag base --seeds 0,1
    python -m bench.compact_cv --tag aux --labels aux --set "members=('tdnn','tdnn','stats')" --set epochs=30
    python -m bench.compact_cv --tag final   # the shipped recipe (defaults of TrainSettings)

Decoded clips are cached under $EMOTIVOICE_CACHE (default /tmp/emotivoice_cache).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RAVDESS = ROOT.parent / "shared" / "datasets" / "ravdess"


def parse_set(items: list[str]) -> dict:
    """``key=value`` overrides -> ``replace(TrainSettings(), **result)`` arguments. A key that names a
    ``CompactConfig`` field (dropout, n_mels, ...) goes into ``TrainSettings.compact``."""
    from pipeline.compact import CompactConfig
    from pipeline.training import TrainSettings

    known = {f.name for f in fields(TrainSettings)} - {"compact"}
    arch_known = {f.name for f in fields(CompactConfig)} - {"members", "labels", "train_labels"}
    out, arch = {}, {}
    for item in items:
        key, _, raw = item.partition("=")
        if key not in known | arch_known:
            raise SystemExit(f"--set {key}: not a TrainSettings or CompactConfig field "
                             f"({', '.join(sorted(known | arch_known))})")
        try:
            val = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            val = raw
        (out if key in known else arch)[key] = tuple(val) if isinstance(val, list) else val
    if arch:
        out["compact"] = replace(TrainSettings().compact, **arch)
    return out


def label_options(mode: str) -> tuple[dict, tuple]:
    """(label_map, extra_labels) for a calm/disgust policy."""
    if mode == "six":
        return {}, ()
    if mode == "calm-neutral":
        return {"calm": "neutral"}, ()
    if mode == "aux":
        return {}, ("calm", "disgust")
    if mode == "calm-neutral-aux":
        return {"calm": "neutral"}, ("disgust",)
    raise SystemExit(f"--labels {mode!r}: six, calm-neutral, aux or calm-neutral-aux")


def member_probas(model, waves) -> np.ndarray:
    """(n_members, n, 6) probabilities of each member alone."""
    import torch

    from pipeline.compact import pad_signal

    net = model.net
    out = []
    with torch.inference_mode():
        for w in waves:
            x = torch.from_numpy(pad_signal(w, net.cfg))[None]
            logits = net.member_logits(net.wave_frames(x).mean(2))[..., : len(net.cfg.labels)]
            out.append(torch.softmax(logits, -1)[:, 0].numpy())
    return np.stack(out, axis=1)


def ensemble(member_proba: np.ndarray, rule: str) -> np.ndarray:
    """(n_members, n, C) probabilities -> (n, C) with the compact model's combination rule."""
    import torch

    from pipeline.compact import combine_member_proba

    return combine_member_proba(torch.log(torch.from_numpy(np.asarray(member_proba)).clamp(min=1e-12)), rule).numpy()


def combine(tags: list[str], proba_dir: str, seeds: list[int], folds: int, rule: str) -> None:
    """Score the ensemble of saved member probabilities of several runs (same folds)."""
    from pipeline.training import metrics_from_proba

    for seed in seeds:
        uars = []
        for f in range(1, folds + 1):
            probs, y, labels = [], None, None
            for tag in tags:
                tag_name, _, tag_seed = tag.partition("@")
                path = Path(proba_dir) / f"{tag_name}_s{tag_seed or seed}_f{f}.npz"
                if not path.is_file():
                    break
                z = np.load(path)
                probs.append(z["member_proba"])
                y, labels = z["y"].tolist(), z["labels"].tolist()
            else:
                uars.append(metrics_from_proba(ensemble(np.concatenate(probs), rule), y, labels).uar)
                continue
            break
        if uars:
            print(f"{rule} ensemble {'+'.join(tags)} seed {seed}: UAR {np.mean(uars):.3f} +- "
                  f"{np.std(uars, ddof=1) if len(uars) > 1 else 0:.3f} folds {np.round(uars, 3).tolist()}")


def record(model_dir: str, tag: str, seeds: list[int], proba_dir: str, folds: int, protocol: str,
           where: str | None = None) -> dict:
    """Write the cross-validated figures of run ``tag`` (every seed given) into ``model_dir/config.json``
    (key cross_validation): per-fold rows of each seed, each seed's mean and spread, the mean over seeds."""
    from pipeline.compact import CompactConfig
    from pipeline.training import metrics_from_proba

    cfg_path = Path(model_dir) / "config.json"
    doc = json.loads(cfg_path.read_text())
    rule = CompactConfig.from_dict(doc["config"]).combine
    rows, per_seed = [], []
    for seed in seeds:
        seed_rows = []
        for f in range(1, folds + 1):
            path = Path(proba_dir) / f"{tag}_s{seed}_f{f}.npz"
            if not path.is_file():
                raise SystemExit(f"--record: {path} is missing (run every fold of {tag!r} seed {seed} first)")
            z = np.load(path)
            y, labels = z["y"].tolist(), z["labels"].tolist()
            m = metrics_from_proba(ensemble(z["member_proba"], rule), y, labels)
            actors = sorted({Path(p).parent.name.split("_")[-1].lstrip("0") for p in z["paths"]}, key=int)
            seed_rows.append({"seed": seed, "fold": f, "test_actors": actors, "n": m.n, "uar": round(m.uar, 4),
                              "wa": round(m.wa, 4), "macro_f1": round(m.macro_f1, 4),
                              "per_class": {k: None if v is None else round(v, 4) for k, v in m.per_class.items()},
                              "member_uar": [round(metrics_from_proba(p, y, labels).uar, 4)
                                             for p in z["member_proba"]]})
        u = np.array([r["uar"] for r in seed_rows])
        spread = float(u.std(ddof=1)) if len(u) > 1 else 0.0
        per_seed.append({"seed": seed, "uar_mean": round(float(u.mean()), 4), "uar_std": round(spread, 4),
                         "wa_mean": round(float(np.mean([r["wa"] for r in seed_rows])), 4),
                         "macro_f1_mean": round(float(np.mean([r["macro_f1"] for r in seed_rows])), 4)})
        rows += seed_rows
    cv = {"protocol": protocol, "run": f"{tag} seeds {','.join(map(str, seeds))}", "combine": rule,
          "where": where, "folds": rows, "per_seed": per_seed,
          "uar_mean": round(float(np.mean([p["uar_mean"] for p in per_seed])), 4),
          "uar_std_over_folds": round(float(np.mean([p["uar_std"] for p in per_seed])), 4),
          "wa_mean": round(float(np.mean([p["wa_mean"] for p in per_seed])), 4),
          "macro_f1_mean": round(float(np.mean([p["macro_f1_mean"] for p in per_seed])), 4)}
    doc["cross_validation"] = cv
    cfg_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in cv.items() if k != "folds"}, indent=2))
    return cv


def timing(data: str, repeats: int = 30) -> None:
    """Inference time of the shipped model on a 3 s clip (median ms, 1 and 2 torch threads) and its size."""
    import torch

    from pipeline.audio import decode_audio
    from pipeline.compact import COMPACT_DIR, WEIGHTS_FILE, load_compact

    model = load_compact()
    x = decode_audio(Path(data) / "Actor_02" / "03-01-05-02-01-01-02.flac").samples[: 3 * 16000]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model.predict_proba([x])
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.predict_proba([x])
            ts.append(time.perf_counter() - t0)
        ms = 1000 * float(np.median(ts))
        print(f"compact model, 3 s clip, {threads} thread(s): median {ms:.1f} ms "
              f"(min {1000 * min(ts):.1f} ms), {3000 / ms:.0f}x faster than real time")
    size = (COMPACT_DIR / WEIGHTS_FILE).stat().st_size
    n_params = sum(p.numel() for p in model.net.parameters())
    print(f"weights: {size / 1e6:.2f} MB, {n_params} parameters, members {list(model.cfg.members)}")


def main(argv: list[str] | None = None) -> int:
    from pipeline.training import (TrainSettings, load_waves, metrics_from_proba, read_manifest, train_arrays)

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(RAVDESS))
    ap.add_argument("--tag", default="run")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--only-folds", default=None, help="comma-separated fold numbers (1-based) to run")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--labels", default="six", help="six | calm-neutral | aux | calm-neutral-aux")
    ap.add_argument("--val", default="auto", help="inner validation: auto | none")
    ap.add_argument("--set", action="append", default=[], help="TrainSettings override key=value")
    ap.add_argument("--out", default="/tmp/emotivoice_cache/cv_results.jsonl")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-proba", default="/tmp/emotivoice_cache/cv_proba",
                    help="folder for per-fold test probabilities (ensembles can then be scored offline)")
    ap.add_argument("--combine", default=None,
                    help="TAG[@SEED],TAG...: score the average of saved runs' member probabilities, then exit")
    ap.add_argument("--record", default=None, metavar="MODEL_DIR",
                    help="write run --tag's cross-validated figures (saved probabilities) into MODEL_DIR/config.json")
    ap.add_argument("--where", default=None,
                    help="--record: where the folds were trained (e.g. 'GPU, --set device=cuda'), stored as is")
    ap.add_argument("--timing", action="store_true", help="time the shipped model on a 3 s clip, then exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.timing:
        timing(args.data)
        return 0
    if args.record:
        record(args.record, args.tag, [int(x) for x in args.seeds.split(",")], args.save_proba, args.folds,
               f"leave-actors-out, {args.folds} folds of {18 // args.folds} actors (RAVDESS actors 1-18 in order), "
               "each fold's model trained by the same recipe on the other actors; scored on the held-out "
               "actors' six-emotion clips, full length", where=args.where)
        return 0
    if args.combine:
        for rule in ("arithmetic", "geometric"):
            combine(args.combine.split(","), args.save_proba, [int(s) for s in args.seeds.split(",")], args.folds,
                    rule)
        return 0

    label_map, extras = label_options(args.labels)
    data = read_manifest(args.data, Path(args.data) / "manifest.csv", label_map=label_map, extra_labels=extras)
    waves = load_waves(data.paths)
    actors = data.speaker_set()
    k = args.folds
    groups = [actors[i * len(actors) // k:(i + 1) * len(actors) // k] for i in range(k)]
    fold_ids = [int(f) for f in args.only_folds.split(",")] if args.only_folds else list(range(1, k + 1))
    overrides = parse_set(args.set)
    six = set(("anger", "fear", "happiness", "sadness", "surprise", "neutral"))
    # Test clips: the original six-class clips only (calm is not scored even when trained as neutral).
    raw = read_manifest(args.data, Path(args.data) / "manifest.csv")
    raw_index = {p: lab for p, lab in zip(raw.paths, raw.labels)}

    for seed in [int(s) for s in args.seeds.split(",")]:
        settings = replace(TrainSettings(), **{**overrides, "seed": seed, "threads": args.threads})
        fold_rows = []
        t_run = time.perf_counter()
        for f in fold_ids:
            test_spk = set(groups[f - 1])
            tr_idx = [i for i, s in enumerate(data.speakers) if s not in test_spk]
            te_idx = [i for i, s in enumerate(data.speakers) if s in test_spk and data.paths[i] in raw_index]
            t0 = time.perf_counter()
            res = train_arrays([waves[i] for i in tr_idx], data.subset(tr_idx), None, settings=settings,
                               val_speakers=args.val, extra_labels=extras)
            model = res.model
            te_w = [waves[i] for i in te_idx]
            te_y = [raw_index[data.paths[i]] for i in te_idx]
            assert set(te_y) <= six
            proba = model.predict_proba(te_w)
            ens = metrics_from_proba(proba, te_y, model.labels)
            mprob = member_probas(model, te_w)
            per_member = [metrics_from_proba(p, te_y, model.labels).uar for p in mprob]
            if args.save_proba:
                Path(args.save_proba).mkdir(parents=True, exist_ok=True)
                np.savez(Path(args.save_proba) / f"{args.tag}_s{seed}_f{f}.npz", member_proba=mprob,
                         labels=np.array(model.labels), y=np.array(te_y),
                         paths=np.array([data.paths[i] for i in te_idx]))
            row = {"fold": f, "test_actors": sorted(test_spk, key=int), "uar": ens.uar, "wa": ens.wa,
                   "macro_f1": ens.macro_f1, "member_uar": per_member,
                   "best_epochs": [m.best_epoch for m in res.members],
                   "inner_val_uar": [m.best_val_uar for m in res.members],
                   "per_class": ens.per_class, "train_s": time.perf_counter() - t0}
            fold_rows.append(row)
            print(f"[{args.tag} seed {seed}] fold {f} actors {row['test_actors']}: UAR {ens.uar:.3f} WA {ens.wa:.3f} "
                  f"F1 {ens.macro_f1:.3f} members {np.round(per_member, 3).tolist()} "
                  f"best epochs {row['best_epochs']} ({row['train_s']:.0f} s)", flush=True)
        uars = np.array([r["uar"] for r in fold_rows])
        mem = np.array([np.mean(r["member_uar"]) for r in fold_rows])
        summary = {"tag": args.tag, "seed": seed, "labels": args.labels, "val": args.val,
                   "settings": settings.to_dict(), "folds": fold_rows, "uar_mean": float(uars.mean()),
                   "uar_std": float(uars.std(ddof=1)) if len(uars) > 1 else 0.0,
                   "member_uar_mean": float(mem.mean()), "seconds": time.perf_counter() - t_run}
        print(f"[{args.tag} seed {seed}] UAR {summary['uar_mean']:.3f} +- {summary['uar_std']:.3f} "
              f"(mean member {summary['member_uar_mean']:.3f}) over folds {fold_ids} in {summary['seconds']:.0f} s",
              flush=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
