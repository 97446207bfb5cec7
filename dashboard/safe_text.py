"""User text made safe for Streamlit's Markdown elements (no Streamlit import: the Live page's helpers and
reports use it too)."""

from __future__ import annotations

_MD_SPECIAL = {c: "\\" + c for c in "\\`*_{}[]()#+-.!|<>~$:&=\"'"}


def md_escape(text: object) -> str:
    """User text (a file name, path, transcript, error message) made literal inside Markdown, on one line.

    Every Markdown-significant ASCII character is backslash-escaped (CommonMark allows it for any ASCII
    punctuation), so a name cannot become a link, an image the browser fetches, HTML, LaTeX (``$``),
    a colour directive or an icon (``:red[...]``, ``:material/...:``); line breaks become spaces. Use it
    wherever user text has to sit in a Markdown element (``st.error``, ``st.caption``, labels); prefer
    ``st.text``, ``st.code`` or a dataframe where the text stands alone.
    """
    flat = " ".join(str(text).splitlines())
    return "".join(_MD_SPECIAL.get(c, c) for c in flat)


__all__ = ["md_escape"]
