"""Decode and probe audio in child processes, so that a native crash or a hang fails one file, not the run.

FFmpeg (through PyAV) is C code: a malformed or unusual file can make it crash the whole process
(SIGSEGV, abort) or loop. Here each file is decoded in a child forked from a ``forkserver`` (which has
numpy, PyAV and this package imported once, so a child starts in a few milliseconds and never inherits
the threads of the caller). The child sends the samples back through a pipe straight into a numpy
buffer. A child that dies becomes ``AudioError(kind='crashed')`` with the signal's name ("crashed the
analyser: SIGSEGV"); one that runs past the timeout is killed and becomes ``kind='timeout'``.

Public API: :func:`decode_file` (isolated or not, as configured), :func:`decode_isolated`,
:func:`probe_isolated` (many files through one child, restarted after a crash), :func:`crash_reason`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable, Iterator

import numpy as np

from pipeline.audio import Audio, AudioInfo, decode_audio, probe_audio
from pipeline.runtime import SAMPLE_RATE
from pipeline.types import AudioError

logger = logging.getLogger(__name__)

#: Modules the forkserver imports once, so that every forked child starts with them loaded.
#: '__main__' (multiprocessing's default) imports the caller's main module once in the forkserver
#: instead of once per child: like every spawn-style start method, it needs the usual
#: ``if __name__ == "__main__":`` guard in a script that decodes.
_PRELOAD = ["__main__", "numpy", "av", "pipeline.audio", "pipeline.isolate"]
_CTX_LOCK = threading.Lock()
_CTX: mp.context.BaseContext | None = None
_DAEMON_LOCK = threading.Lock()

#: Test hook: a function name in this module the child calls before its work (see tests).
_FAULT_ENV = "EMOTIVOICE_TEST_DECODE_FAULT"


def _context() -> mp.context.BaseContext:
    """The multiprocessing context of the children: forkserver where available, else spawn."""
    global _CTX
    with _CTX_LOCK:
        if _CTX is None:
            if "forkserver" in mp.get_all_start_methods():
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(_PRELOAD)
            else:  # pragma: no cover - macOS/Windows have no forkserver
                ctx = mp.get_context("spawn")
            _CTX = ctx
        return _CTX


def crash_reason(exitcode: int | None) -> str:
    """What a child's exit code means, in words: 'SIGSEGV', 'SIGKILL (out of memory?)', 'exit code 3'."""
    if exitcode is None:
        return "no exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return name + (" (killed: out of memory?)" if -exitcode == signal.SIGKILL else "")
    return f"exit code {exitcode}"


# ----------------------------------------------------------------------------- the child side
def _maybe_fault(path: str, spec: str | None) -> None:
    """Tests only: ``EMOTIVOICE_TEST_DECODE_FAULT=segv|abort|hang|oom:<substring>`` (read by the parent
    and passed along) makes the child misbehave natively on files whose name contains the substring:
    how a real decoder crash looks to the parent."""
    if not spec or ":" not in spec:
        return
    what, needle = spec.split(":", 1)
    if needle not in os.path.basename(path):
        return
    if what == "segv":
        import ctypes

        ctypes.string_at(0)  # reads address 0: a real SIGSEGV
    elif what == "abort":
        os.abort()
    elif what == "hang":
        time.sleep(3600)
    elif what == "oom":
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does


def _decode_child(conn: Connection, path: str, sample_rate: int, fault: str | None) -> None:
    try:
        _maybe_fault(path, fault)
        audio = decode_audio(path, sample_rate=sample_rate)
    except AudioError as exc:
        conn.send(("error", exc.reason, exc.kind))
        return
    except MemoryError:
        conn.send(("error", "crashed the analyser: out of memory while decoding", "crashed"))
        return
    except Exception as exc:  # any other bug of the decoder stack: one file fails, with the reason
        conn.send(("error", f"could not decode: {type(exc).__name__}: {exc}", "decode"))
        return
    meta = {k: getattr(audio, k) for k in ("sample_rate", "source_sample_rate", "channels", "duration_s")}
    conn.send(("ok", meta, len(audio.samples)))
    conn.send_bytes(memoryview(np.ascontiguousarray(audio.samples, dtype=np.float32)).cast("B"))


def _probe_child(conn: Connection, paths: list[str], fault: str | None) -> None:
    for path in paths:
        try:
            _maybe_fault(path, fault)
            info = probe_audio(path)
            conn.send(("ok", path, info))
        except AudioError as exc:
            conn.send(("error", path, (exc.reason, exc.kind)))
        except Exception as exc:
            conn.send(("error", path, (f"could not decode: {type(exc).__name__}: {exc}", "decode")))
    conn.send(("done", None, None))


# ----------------------------------------------------------------------------- the parent side
class _Child:
    """One child process running ``target(conn, *args)``, with a pipe back to the parent."""

    def __init__(self, target: Callable, *args):
        ctx = _context()
        self.recv, send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=target, args=(send, *args), daemon=True)
        cur = mp.current_process()
        if cur.daemon:  # e.g. a Dask worker: multiprocessing forbids children of daemons by an assert only;
            with _DAEMON_LOCK:  # ours are short-lived and killed on timeout, so lift it while starting
                cur._config["daemon"] = False
                try:
                    self.proc.start()
                finally:
                    cur._config["daemon"] = True
        else:
            self.proc.start()
        send.close()  # the parent's copy: EOF on recv once the child is gone

    def wait(self, deadline: float) -> bool:
        """True when a message is ready; False on timeout or when the child died without one."""
        left = max(0.0, deadline - time.monotonic())
        ready = wait([self.recv, self.proc.sentinel], timeout=left)
        if self.recv in ready and self.recv.poll():
            return True
        return False

    def died(self) -> str:
        self.proc.join(5)
        return crash_reason(self.proc.exitcode)

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)

    def close(self) -> None:
        self.recv.close()
        self.kill()
        self.proc.close()


def decode_isolated(path: str | os.PathLike, *, sample_rate: int = SAMPLE_RATE,
                    timeout_s: float = 300.0) -> Audio:
    """:func:`pipeline.audio.decode_audio` in a child process.

    Raises:
        AudioError: everything ``decode_audio`` raises, plus kind 'crashed' ("crashed the analyser:
            SIGSEGV") when the child dies and kind 'timeout' when it runs past ``timeout_s`` seconds.
    """
    name = os.fspath(path)
    child = _Child(_decode_child, name, int(sample_rate), os.environ.get(_FAULT_ENV))
    deadline = time.monotonic() + timeout_s
    try:
        if not child.wait(deadline):
            if child.proc.is_alive():
                child.kill()
                raise AudioError(name, f"timed out: decoding took longer than {timeout_s:g} s", kind="timeout")
            raise AudioError(name, f"crashed the analyser: {child.died()}", kind="crashed")
        try:
            head = child.recv.recv()
            if head[0] == "error":
                raise AudioError(name, head[1], kind=head[2])
            meta, n = head[1], head[2]
            samples = np.empty(n, dtype=np.float32)
            if n:
                if not child.wait(deadline):
                    raise EOFError
                child.recv.recv_bytes_into(memoryview(samples).cast("B"))
        except (EOFError, OSError):  # the child died while sending
            raise AudioError(name, f"crashed the analyser: {child.died()}", kind="crashed") from None
        return Audio(samples=samples, path=name, **meta)
    finally:
        child.close()


def probe_isolated(paths: Iterable[str | os.PathLike], *, timeout_s: float = 60.0
                   ) -> Iterator[tuple[str, AudioInfo | AudioError]]:
    """:func:`pipeline.audio.probe_audio` for many files in one child process, in order.

    Yields ``(path, AudioInfo)`` or ``(path, AudioError)``. A file that crashes the child (or takes
    longer than ``timeout_s`` seconds) yields an AudioError of kind 'crashed' ('timeout'), and a new
    child carries on with the next file.
    """
    todo = [os.fspath(p) for p in paths]
    while todo:
        child = _Child(_probe_child, todo, os.environ.get(_FAULT_ENV))
        try:
            while todo:
                if not child.wait(time.monotonic() + timeout_s):
                    path = todo.pop(0)
                    if child.proc.is_alive():
                        child.kill()
                        yield path, AudioError(path, f"timed out: probing took longer than {timeout_s:g} s",
                                               kind="timeout")
                    else:
                        yield path, AudioError(path, f"crashed the analyser: {child.died()}", kind="crashed")
                    break  # a new child for the rest
                try:
                    status, path, payload = child.recv.recv()
                except (EOFError, OSError):
                    path = todo.pop(0)
                    yield path, AudioError(path, f"crashed the analyser: {child.died()}", kind="crashed")
                    break
                if status == "done":
                    return
                todo.pop(0)
                yield path, (payload if status == "ok" else AudioError(path, payload[0], kind=payload[1]))
        finally:
            child.close()


def decode_file(path: str | os.PathLike, config=None, *, sample_rate: int = SAMPLE_RATE) -> Audio:
    """Decode one file as the configuration says: in a child process (``decode_isolation``, the
    default) with ``decode_timeout_s``, or in this process."""
    isolate = getattr(config, "decode_isolation", True)
    timeout_s = float(getattr(config, "decode_timeout_s", 300.0))
    if isolate:
        return decode_isolated(path, sample_rate=sample_rate, timeout_s=timeout_s)
    _maybe_fault(os.fspath(path), os.environ.get(_FAULT_ENV))  # tests: a crash that takes this process down
    return decode_audio(path, sample_rate=sample_rate)
