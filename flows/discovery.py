"""Finding a corpus's files: a local folder or an fsspec URL (``s3://bucket/prefix``, ``gs://...``, ...).

Discovery streams (``iter_discover``): each folder's files come out as soon as that folder is listed, so
the flow can submit the first file while the rest of a large corpus is still being listed. Workers read a
file where it lies: ``local_copy`` gives a local path for the decoder (a remote file is downloaded into a
temporary file, deleted after), ``content_sha256`` hashes it without a copy.

Local files are audio by extension or, failing that, by content (probed in a child process when
``config.decode_isolation``). Remote files are recognised by their extension only: probing every
object's content would download it.

Pointing at an S3-compatible server and giving credentials follows s3fs/botocore's own conventions; any
one of these works (set them where the flow *and* its workers run):

* ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE`` with ``~/.aws/credentials``) and
  ``AWS_ENDPOINT_URL=http://127.0.0.1:9000`` for a local server (MinIO, moto); read when a filesystem is
  made, so they may be set at any time;
* fsspec configuration: ``FSSPEC_S3_ENDPOINT_URL``, ``FSSPEC_S3_KEY``, ``FSSPEC_S3_SECRET`` (or
  ``FSSPEC_S3='{"endpoint_url": "...", "key": "...", "secret": "..."}'``, or a JSON/INI file in
  ``~/.config/fsspec/``); read once, when fsspec is first imported, so they must be set before the
  process starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator

from pipeline import Config

logger = logging.getLogger(__name__)

#: Extensions that make a file audio by name: if it then cannot be decoded it is 'failed', not 'skipped'.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".bwf", ".rf64", ".w64", ".flac", ".mp3", ".mp2", ".ogg", ".oga", ".opus", ".spx",
    ".m4a", ".m4b", ".aac", ".mp4", ".webm", ".weba", ".mka", ".wma", ".aif", ".aiff", ".aifc", ".caf",
    ".amr", ".3gp", ".au", ".snd", ".ac3", ".ape", ".wv"})
#: Leading bytes of audio containers: a file without an audio extension that starts like this but does
#: not probe as audio is damaged audio ('failed'), not some other kind of file ('skipped').
_AUDIO_MAGIC = (b"RIFF", b"RF64", b"fLaC", b"ID3", b"OggS", b"FORM", b"caff", b"\x1aE\xdf\xa3", b"#!AMR",
                b".snd", b"MAC ", b"wvpk")
#: Files without an audio extension wait for a content probe in batches of this many (one child process
#: per batch), so that extension-less corpora still stream.
PROBE_BATCH = 64
#: Bytes per read when hashing or copying a remote file.
BLOCK = 1 << 20

HIDDEN_FOLDER = "hidden folder (not searched)"
HIDDEN_FILE = "hidden file"
REMOTE_NOT_AUDIO = "not audio (remote files are recognised by their extension)"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


@dataclass(frozen=True)
class Found:
    """One entry of a corpus, as discovery saw it."""

    path: str
    """A local path (under the root as given) or a full URL (``s3://bucket/key``)."""
    status: str
    """'audio' | 'skipped' | 'failed'."""
    size_bytes: int | None = None
    stamp: str | None = None
    """Changes when the file does: local ``st_mtime_ns``; remote the ETag, else the modification time."""
    reason: str = ""
    error_type: str = ""
    """For 'failed': one of ``pipeline.AUDIO_ERROR_KINDS``."""


@dataclass
class Discovered:
    audio: list[Path]
    skipped: list[tuple[Path, str]]
    failed: list[tuple[Path, str, str]] = field(default_factory=list)
    """(path, reason, error_type): audio-looking files found broken while discovering."""


# ----------------------------------------------------------------------------- roots
def is_remote(path: str | os.PathLike) -> bool:
    """True for a URL that fsspec reads (``s3://``, ``gs://``, ``memory://``, chained ``a::b://``), false
    for a local path or a ``file://`` URL."""
    if not isinstance(path, str):
        return False
    if "::" in path:
        return True
    return bool(_URL.match(path)) and not path.lower().startswith("file://")


def _local(path: str | os.PathLike) -> str:
    name = os.fspath(path)
    return name[len("file://"):] if name.lower().startswith("file://") else name


def resolve_root(root: str | os.PathLike) -> str:
    """The corpus root in the form runs record and compare: a local folder as an absolute, resolved
    path; a URL normalised by its filesystem (``s3://bucket/prefix``, no trailing slash).

    Raises:
        FileNotFoundError: a local root that is not a folder; a remote one that does not exist or cannot
            be listed (no such bucket, no credentials, no access), with the reason.
    """
    if not is_remote(root):
        path = Path(os.path.abspath(_local(root))).resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"{root}: no such folder")
        return str(path)
    try:
        fs, path = _filesystem(root, fresh=True)
        info = fs.info(path)
    except Exception as exc:  # any failure to reach or list the store: the user's root is unusable
        raise FileNotFoundError(f"{root}: no such folder or bucket ({_reason(exc)})") from exc
    if info.get("type") != "directory":
        raise FileNotFoundError(f"{root}: no such folder or bucket (it is a file)")
    return fs.unstrip_protocol(path)


def _filesystem(url: str, *, fresh: bool = False):
    """(filesystem, path) for ``url``. ``fresh``: a new instance, so that listings cached by an earlier
    call in this process (a scheduler runs many) are not reused."""
    import fsspec

    return fsspec.core.url_to_fs(url, **({"skip_instance_cache": True} if fresh else {}))


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ----------------------------------------------------------------------------- discovery
def iter_discover(root: str | os.PathLike, config: Config | None = None) -> Iterator[Found]:
    """Every entry under ``root``, folder by folder (sorted, so runs see the same order).

    A folder's audio-by-extension files come out as soon as it is listed; hidden entries are skipped
    with a reason, a folder that cannot be read is failed ('unreadable'). Locally, any other file is
    probed by content (``discover`` says how), in batches of ``PROBE_BATCH``; remotely it is skipped.
    """
    if is_remote(root):
        yield from _iter_remote(str(root))
    else:
        yield from _iter_local(_local(root), config or Config())


def discover(root: Path, config: Config | None = None) -> Discovered:
    """Walk ``root`` (sorted, hidden entries skipped with a reason).

    A file with an audio extension is audio (decoding tells later whether it is good). Any other file is
    probed by content, in a child process when ``config.decode_isolation`` (a crash while probing fails
    that file): audio is audio, a broken file that starts like an audio container is failed, anything
    else is skipped as 'not audio: <reason>'. A folder that cannot be read is failed ('unreadable').
    """
    out = Discovered([], [], [])
    for found in iter_discover(root, config):
        path = Path(found.path)
        if found.status == "audio":
            out.audio.append(path)
        elif found.status == "skipped":
            out.skipped.append((path, found.reason))
        else:
            out.failed.append((path, found.reason, found.error_type))
    out.audio.sort()
    return out


def _iter_local(root: str, config: Config) -> Iterator[Found]:
    errors: list[Found] = []
    to_probe: list[str] = []

    def unreadable(err: OSError) -> None:
        errors.append(Found(err.filename or root, "failed", reason=f"cannot read folder: {err.strerror or err}",
                            error_type="unreadable"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        yield from _drain(errors)
        for d in sorted(d for d in dirnames if d.startswith(".")):
            yield Found(os.path.join(dirpath, d), "skipped", reason=HIDDEN_FOLDER)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if name.startswith("."):
                yield _local_found(path, "skipped", reason=HIDDEN_FILE)
            elif _has_audio_extension(name):
                yield _local_found(path, "audio")
            else:
                to_probe.append(path)
        if len(to_probe) >= PROBE_BATCH:
            yield from _probe_batch(to_probe, config)
            to_probe = []
    yield from _drain(errors)
    yield from _probe_batch(to_probe, config)


def _drain(items: list[Found]) -> Iterator[Found]:
    while items:
        yield items.pop(0)


#: A modification time this close to now does not vouch for the content: a file system with coarse
#: timestamps (whole or even two seconds on some) can give a rewrite within the same tick the same mtime.
RACY_NS = 2_000_000_000


def local_stamp(st: os.stat_result) -> str | None:
    """The change stamp of a local file: its st_mtime_ns as text, or None when it changed within
    ``RACY_NS`` (such a file is hashed, and the next run records its stamp)."""
    return None if time.time_ns() - st.st_mtime_ns < RACY_NS else str(st.st_mtime_ns)


def _has_audio_extension(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _local_found(path: str, status: str, **kw: Any) -> Found:
    try:
        st = os.stat(path)
    except OSError:  # a dangling link, a file removed since the listing: decoding will say so
        return Found(path, status, **kw)
    return Found(path, status, size_bytes=st.st_size, stamp=local_stamp(st), **kw)


def _probe_batch(paths: list[str], config: Config) -> Iterator[Found]:
    """Probe files without an audio extension: audio, failed (crashed, timed out, unreadable, or a
    broken file that starts like an audio container) or skipped as not audio."""
    from pipeline import AudioError, probe_audio
    from pipeline.isolate import probe_isolated

    if not paths:
        return
    logger.debug("probing %d file(s) without an audio extension", len(paths))
    if config.decode_isolation:
        results: Iterable = probe_isolated(paths, timeout_s=min(60.0, config.decode_timeout_s))
    else:
        results = ((p, _probe_or_error(probe_audio, p)) for p in paths)
    for name, outcome in results:
        if not isinstance(outcome, AudioError):
            yield _local_found(name, "audio")
        elif outcome.kind in ("crashed", "timeout", "unreadable") or _looks_like_audio(Path(name)):
            yield _local_found(name, "failed", reason=outcome.reason, error_type=outcome.kind)
        else:
            yield _local_found(name, "skipped", reason=f"not audio: {outcome.reason}")


def _looks_like_audio(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return False
    return head.startswith(_AUDIO_MAGIC) or head[4:8] == b"ftyp"


def _probe_or_error(probe, path):
    from pipeline import AudioError

    try:
        return probe(path)
    except AudioError as exc:
        return exc


def _iter_remote(root: str) -> Iterator[Found]:
    fs, top = _filesystem(root, fresh=True)
    errors: list[Found] = []

    def unreadable(err: OSError) -> None:
        where = fs.unstrip_protocol(err.filename) if getattr(err, "filename", None) else root
        errors.append(Found(where, "failed", reason=f"cannot read folder: {_reason(err)}", error_type="unreadable"))

    for dirpath, dirs, files in fs.walk(top, detail=True, on_error=unreadable):
        yield from _drain(errors)
        for name in sorted(d for d in dirs if d.startswith(".")):
            yield Found(fs.unstrip_protocol(dirs[name]["name"].rstrip("/")), "skipped", reason=HIDDEN_FOLDER)
        kept = {name: dirs[name] for name in sorted(dirs) if not name.startswith(".")}
        dirs.clear()
        dirs.update(kept)  # walk recurses into what is left, in this order
        for _, info in sorted(files.items()):
            yield _remote_found(fs, info)
    yield from _drain(errors)


def _remote_found(fs, info: dict) -> Found:
    key = info["name"]
    name = PurePosixPath(key).name
    size, stamp = info.get("size"), _remote_stamp(info)
    if name.startswith("."):
        status, reason = "skipped", HIDDEN_FILE
    elif _has_audio_extension(name):
        status, reason = "audio", ""
    else:
        status, reason = "skipped", REMOTE_NOT_AUDIO
    return Found(fs.unstrip_protocol(key), status, size_bytes=None if size is None else int(size),
                 stamp=stamp, reason=reason)


def _remote_stamp(info: dict) -> str | None:
    """The ETag without its quotes; else the modification time as text (stores without ETags)."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    for key in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(key)
        if value:
            return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return None


# ----------------------------------------------------------------------------- reading files
@contextlib.contextmanager
def local_copy(path: str | os.PathLike, tmp_dir: str | os.PathLike | None = None) -> Iterator[Path]:
    """A local path to ``path`` for as long as the block runs: a local file is itself; a URL is
    downloaded into a temporary file with the same suffix (in ``tmp_dir``, else the system's temporary
    folder), deleted after the block whatever happens.

    Raises:
        pipeline.AudioError: kind 'unreadable', when the remote file cannot be read.
    """
    if not is_remote(path):
        yield Path(_local(path))
        return
    url = str(path)
    fd, tmp = tempfile.mkstemp(suffix=PurePosixPath(url).suffix, prefix="emotivoice-", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in _remote_blocks(url):
                out.write(block)
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def content_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, local or remote, read in 1 MiB blocks (constant memory).

    Raises:
        pipeline.AudioError: kind 'unreadable', when the file is missing or cannot be read.
    """
    if not is_remote(path):
        from pipeline import file_sha256

        return file_sha256(_local(path))
    digest = hashlib.sha256()
    for block in _remote_blocks(str(path)):
        digest.update(block)
    return digest.hexdigest()


def _remote_blocks(url: str) -> Iterator[bytes]:
    """The bytes of a remote file, ``BLOCK`` at a time; any failure to read is an AudioError."""
    from pipeline import AudioError

    try:
        fs, path = _filesystem(url)
        fs.invalidate_cache(path)  # sizes come from listings: never read a changed file with an old one
        with fs.open(path, "rb") as fh:
            while block := fh.read(BLOCK):
                yield block
    except Exception as exc:  # the store's own errors (network, credentials, missing key) vary by backend
        raise AudioError(url, f"cannot read {url}: {_reason(exc)}", kind="unreadable") from exc
