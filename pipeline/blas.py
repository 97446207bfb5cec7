"""Numpy's OpenBLAS limited to one thread around work that interleaves numpy and torch (threadpoolctl).

Public API: :func:`one_blas_thread` (a decorator).
"""

from __future__ import annotations

import functools
import logging
import threading

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """threadpoolctl's view of the OpenBLAS pools numpy/scipy loaded (None when unavailable)."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController().select(internal_api="openblas")
    except Exception as exc:  # pragma: no cover - threadpoolctl is a dependency
        logger.info("threadpoolctl unavailable (%s): numpy's BLAS keeps its threads", exc)
        return None


_BLAS_STATE: dict = {"depth": 0, "limiter": None}  # main thread only: nested calls keep the outer limit


def one_blas_thread(fn):
    """Run ``fn`` with numpy's OpenBLAS on one thread (threadpoolctl) when called from the main thread.

    The explanations interleave small numpy products with torch ops. With both libraries' thread pools
    on the same cores, each waits for the other's spinning threads; on the main thread (the CLI's
    ``analyze``, the benches) one OpenBLAS thread roughly halves the fast tier's time. Called from other
    threads (Prefect tasks, Streamlit, the live worker) the function runs as it is: there OpenBLAS shows no
    contention, ignores a limit set from a thread once the main thread has set one, and changing its limit
    from the live page's worker thread stalled the WebRTC stream. Only OpenBLAS is limited (an MKL that
    torch may share is left alone); the outermost call sets the limit and restores it. Measurements:
    docs/benchmarks.md (``python -m bench.explain_cost``).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            return fn(*args, **kwargs)
        if _BLAS_STATE["depth"] == 0:
            ctl = _blas_controller()
            _BLAS_STATE["limiter"] = ctl.limit(limits=1) if ctl is not None and len(ctl) else None
        _BLAS_STATE["depth"] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _BLAS_STATE["depth"] -= 1
            if _BLAS_STATE["depth"] == 0 and _BLAS_STATE["limiter"] is not None:
                _BLAS_STATE["limiter"].restore_original_limits()
                _BLAS_STATE["limiter"] = None

    return wrapper
