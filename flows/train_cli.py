"""``emotivoice train`` and ``emotivoice evaluate``: their options and what they print.

The library side is ``pipeline.training`` (``train``, ``evaluate``, ``TrainSettings``); this module only
turns command-line options into its arguments. ``flows.cli`` registers both subcommands.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from typing import Any

from pipeline.taxonomy import to_canonical
from pipeline.training import TrainSettings, evaluate, load_model_for_eval, plot_confusion, train

log = logging.getLogger(__name__)


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _label_map(text: str | None) -> dict[str, str]:
    out = {}
    for item in _csv_list(text or ""):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"--map-label {item!r}: expected ORIGINAL=CANONICAL")
        k, v = item.split("=", 1)
        if to_canonical(v) is None:
            raise argparse.ArgumentTypeError(f"--map-label {item!r}: {v!r} is not one of the six emotions")
        out[k.strip().lower()] = to_canonical(v)
    return out


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``emotivoice train``."""
    d = TrainSettings()
    parser.add_argument("--data", required=True, action="append",
                        help="folder the manifest's paths are relative to (once, or once per --manifest)")
    parser.add_argument("--manifest", required=True, action="append",
                        help="CSV with columns path,label[,speaker]; repeat to train on several corpora")
    parser.add_argument("--out", required=True, help="output model folder")
    parser.add_argument("--arch", choices=("compact", "hubert", "whisper"), default="compact",
                        help="whisper: a calibrated head on Whisper encoder frames (docs/whisper_emotion.md)")
    parser.add_argument("--encoder", default="base",
                        help="whisper: the Whisper encoder (packaged size base/tiny.en, or a CTranslate2 folder)")
    parser.add_argument("--speaker-norm", action="store_true",
                        help="whisper: train on per-speaker centred statistics (use needs several chunks per speaker)")
    parser.add_argument("--augment", type=int, default=0, metavar="N",
                        help="whisper: also train on N random channel-augmented copies of each clip (band limits, "
                             "noise, gain; docs/whisper_emotion.md)")
    parser.add_argument("--base", default=None, help="HuBERT base checkpoint (id or path) for --arch hubert")
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"maximum epochs (default {d.epochs} for compact, 10 for hubert)")
    parser.add_argument("--val-speakers", default="auto",
                        help="comma-separated validation speakers, 'auto' (default: each ensemble member "
                             "holds out its own speaker group) or 'none' (fixed epochs, no early stopping)")
    parser.add_argument("--label-column", default=None, help="default 'label', else 'emotion'")
    parser.add_argument("--speaker-column", default=None, help="default 'speaker', else 'actor'")
    parser.add_argument("--map-label", default=None,
                        help="extra label aliases ORIGINAL=CANONICAL,... (e.g. calm=neutral)")
    parser.add_argument("--aux-labels", default=None,
                        help="compact: original labels trained as auxiliary classes and dropped at inference")
    parser.add_argument("--members", default=None,
                        help="compact ensemble members: a count (of 'tdnn' members) or kinds, e.g. "
                             f"tdnn,tdnn,stats (default {','.join(d.members)})")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for this small model on a shared CPU)")
    parser.add_argument("--device", default="cpu",
                        help="compact: where the TDNN members train (cpu, cuda); the saved model runs on any")
    parser.add_argument("--freeze-encoder", action="store_true", help="hubert: train the head only")
    parser.add_argument("--cache-dir", default=None, help="decoded-audio cache (default $EMOTIVOICE_CACHE or /tmp)")
    return parser


def _members_arg(text: str) -> tuple[str, ...]:
    from pipeline.compact import MEMBER_KINDS

    text = str(text).strip()
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError("--members must be at least 1")
        return ("tdnn",) * int(text)
    kinds = tuple(_csv_list(text))
    bad = [k for k in kinds if k not in MEMBER_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"--members {text!r}: a count or kinds among {', '.join(MEMBER_KINDS)}")
    return kinds


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    s = TrainSettings()
    upd: dict[str, Any] = {"seed": args.seed, "threads": args.threads, "freeze_encoder": args.freeze_encoder,
                           "device": args.device}
    if args.epochs is not None:
        upd["epochs"] = args.epochs
    elif args.arch == "hubert":
        upd["epochs"] = 10
    if args.members is not None:
        upd["members"] = _members_arg(args.members)
    if args.batch_size is not None:
        upd["batch_size"] = args.batch_size
    if args.lr is not None:
        upd["lr" if args.arch == "compact" else "hubert_lr"] = args.lr
    if args.patience is not None:
        upd["patience"] = args.patience or None
    return replace(s, **upd)


def run_train(args: argparse.Namespace) -> int:
    """``emotivoice train``: train, save, print a summary. Returns the exit status."""
    import shlex
    import sys

    settings = settings_from_args(args)
    argv = sys.argv[1:]
    rest = argv[argv.index("train") + 1:] if "train" in argv else argv
    command = "emotivoice train " + " ".join(shlex.quote(a) for a in rest)
    result = train(args.data, args.manifest, args.out, arch=args.arch, base=args.base, settings=settings,
                   val_speakers=args.val_speakers, label_column=args.label_column,
                   speaker_column=args.speaker_column, label_map=_label_map(args.map_label),
                   extra_labels=_csv_list(args.aux_labels or ""), cache_dir=args.cache_dir, progress=True,
                   command=command, **_whisper_kwargs(args))
    print(f"trained {result.arch} model on {result.n_clips} clips of {len(result.speakers)} speakers "
          f"in {result.seconds:.0f} s -> {result.out_dir}")
    if result.skipped:
        print("skipped rows (labels outside the six): "
              + ", ".join(f"{k} ({v})" for k, v in sorted(result.skipped.items())))
    if result.arch == "whisper":
        inner = getattr(result.model, "metadata", {}).get("inner_cv", {})
        print(f"  head chosen on held-out training speakers: UAR {inner.get('uar')}, C {result.model.metadata.get('c')}, "
              f"temperature {result.model.cfg.temperature:.3f}, ECE {inner.get('ece_raw')} -> {inner.get('ece_calibrated')}")
    for m in result.members if result.arch != "whisper" else []:
        val = "no validation" if m.best_val_uar is None else (
            f"best val UAR {m.best_val_uar:.3f} at epoch {m.best_epoch} on speakers {','.join(m.val_speakers)}")
        print(f"  member {m.member + 1}: {m.epochs_run} epochs, {val}")
    return 0


def _whisper_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "arch", None) != "whisper":
        return {}
    from pipeline.config import load_config
    from pipeline.training.whisper_head import HeadRecipe

    return {"encoder": args.encoder, "config": load_config(),
            "head_recipe": HeadRecipe(speaker_norm=bool(args.speaker_norm), augment=max(0, int(args.augment)),
                                      seed=args.seed)}


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``emotivoice evaluate``."""
    parser.add_argument("--model", default="compact", help="'compact', a model folder or a hub id")
    parser.add_argument("--data", required=True, help="folder the manifest's paths are relative to")
    parser.add_argument("--manifest", required=True, help="CSV with columns path,label[,speaker]")
    parser.add_argument("--label-column", default=None)
    parser.add_argument("--speaker-column", default=None)
    parser.add_argument("--speakers", default=None, help="only these speakers (comma-separated)")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")
    parser.add_argument("--plot", default=None, help="save the confusion matrix as this PNG")
    parser.add_argument("--cache-dir", default=None)
    return parser



def run_evaluate(args: argparse.Namespace, config: Any = None) -> int:
    """``emotivoice evaluate``: score a model on a manifest; prints text or JSON. Returns the exit status."""
    model = load_model_for_eval(args.model, config)
    if not getattr(model, "trained", True):
        log.warning("model %s is untrained (random weights): its scores measure nothing", model.name)
    speakers = _csv_list(args.speakers) if args.speakers else None
    result = evaluate(model, args.data, args.manifest, label_column=args.label_column,
                      speaker_column=args.speaker_column, speakers=speakers, cache_dir=args.cache_dir,
                      progress=not args.json)
    if args.plot:
        plot_confusion(result, args.plot)
    if args.json:
        print(json.dumps(result.to_json_dict(), indent=2))
    else:
        print(result.summary())
        if args.plot:
            print(f"confusion matrix saved to {args.plot}")
    return 0
