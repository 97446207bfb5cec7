"""Text shown on a terminal: user-controlled strings (file names, reasons) made safe to print."""

from __future__ import annotations

from typing import Any


def printable(text: Any) -> str:
    """``text`` on one line, safe for a terminal: control characters (newline, carriage return, ESC,
    ...), Unicode line/paragraph separators and bidirectional overrides become visible escapes
    (``\\n``, ``\\x1b``, ``\\u202e``); a backslash is doubled so an escape cannot be faked."""
    import unicodedata

    out = []
    for ch in str(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                       else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)
