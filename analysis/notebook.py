"""How results show in a notebook: a one-line ``repr`` and a small HTML card.

A result class lists what matters in ``_facts()`` (title, [(label, value)], [(caption, frame)])
and inherits both forms from :class:`Shown`. The card uses inline styles only: no
``<style>``, ``<link>`` or ``<script>``, so nothing it shows can restyle the notebook
around it. The full report goes in an ``<iframe srcdoc>`` (``Report.show()``), a page of
its own whose CSS and script cannot reach the host.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    import polars as pl

__all__ = ["MAX_ROWS", "Shown", "card", "frame_html", "iframe"]

MAX_ROWS = 10          # rows of a frame shown in a card; the rest are counted
REPR_WIDTH = 160       # characters of a repr; a dataclass dump was 3-10k

_CARD = ("font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;line-height:1.4;"
         "border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:4px 0;max-width:60em;"
         "color:#1f2328;background:#fff")
_CELL = "padding:2px 10px 2px 0;text-align:left;vertical-align:top;border:0"
_HEAD = _CELL + ";font-weight:600;border-bottom:1px solid #d0d7de"


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    return str(v)


def frame_html(frame: pl.DataFrame, max_rows: int = MAX_ROWS) -> str:
    """A polars frame as an inline-styled table of its first ``max_rows`` rows."""
    head = "".join(f'<th style="{_HEAD}">{html.escape(c)}</th>' for c in frame.columns)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{html.escape(_text(v))}</td>' for v in row) + "</tr>"
                   for row in frame.head(max_rows).iter_rows())
    more = (f'<div style="color:#59636e">{frame.height - max_rows:,} more rows</div>'
            if frame.height > max_rows else "")
    return f'<table style="border-collapse:collapse;margin:4px 0"><tr>{head}</tr>{body}</table>{more}'


def card(title: str, facts: list[tuple[str, Any]], frames: Sequence[tuple[str, Any]] = ()) -> str:
    """Title, label/value facts and captioned frames as one inline-styled block."""
    rows = "".join(f'<tr><th style="{_CELL};font-weight:600">{html.escape(k)}</th>'
                   f'<td style="{_CELL}">{html.escape(_text(v))}</td></tr>' for k, v in facts if v is not None)
    parts = [f'<div style="{_CARD}"><div style="font-weight:600;font-size:14px">{html.escape(title)}</div>',
             f'<table style="border-collapse:collapse">{rows}</table>']
    for caption, frame in frames:
        if frame is not None and frame.height:
            parts.append(f'<div style="margin-top:6px;color:#59636e">{html.escape(caption)}</div>'
                         + frame_html(frame))
    return "".join(parts) + "</div>"


def iframe(page: str, height: int = 900) -> str:
    """A whole HTML page shown inside a notebook cell, isolated from the notebook's CSS and script."""
    return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;'
            'border:1px solid #d0d7de;border-radius:6px" sandbox="allow-scripts allow-downloads"></iframe>')


class Shown:
    """A result that shows as one line in a terminal and as a card in a notebook."""

    def _facts(self) -> tuple[str, list[tuple[str, Any]], list[tuple[str, Any]]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        title, facts, frames = self._facts()
        body = "; ".join(f"{k} {_text(v)}" for k, v in facts if v is not None)
        line = f"<{type(self).__name__} {title}: {body}>" if body else f"<{type(self).__name__} {title}>"
        return line if len(line) <= REPR_WIDTH else line[:REPR_WIDTH - 4] + "...>"

    def _repr_html_(self) -> str:
        return card(*self._facts())
