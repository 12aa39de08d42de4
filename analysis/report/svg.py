"""Small static SVG charts for the HTML report: no JavaScript, no network,
so the page renders offline and identically in any browser.

A :class:`Chart` collects series on numeric axes (lines, bands, points,
segments) and renders one ``<svg>``; :func:`hbars` and :func:`parallel` draw
the two shapes that do not fit x/y axes.
"""

from __future__ import annotations

import itertools
import math
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2g}"
    return f"{v:.4g}"


class Chart:
    """x/y chart. ``xcats``: category labels for an x axis of 0..k-1."""

    def __init__(self, title: str = "", xlabel: str = "", ylabel: str = "", width: int = 600, height: int = 300,
                 xcats: list[str] | None = None) -> None:
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel
        self.w, self.h, self.xcats = width, height, xcats
        self.items: list[tuple] = []
        self.legend: list[tuple] = []
        self.m = {"l": 62, "r": 12, "t": 28, "b": 44}

    # --- series ------------------------------------------------------------------
    def line(self, xs: Sequence[float], ys: Sequence[float], col: str, label: str | None = None, width: float = 1.8,
             opacity: float = 1.0, dash: str | None = None,
             step: bool = False) -> None:
        pts = [(x, y) for x, y in zip(xs, ys) if _finite(x) and _finite(y)]
        if step and pts:
            stepped = [pts[0]]
            for (_, y0), (x1, y1) in itertools.pairwise(pts):
                stepped += [(x1, y0), (x1, y1)]
            pts = stepped
        self.items.append(("line", pts, {"col": col, "width": width, "opacity": opacity, "dash": dash}))
        self._label(label, col)

    def band(self, xs: Sequence[float], lo: Sequence[float], hi: Sequence[float], col: str,
             opacity: float = 0.18) -> None:
        pts = [(x, a, b) for x, a, b in zip(xs, lo, hi) if _finite(x) and _finite(a) and _finite(b)]
        self.items.append(("band", pts, {"col": col, "opacity": opacity}))

    def points(self, xs: Sequence[float], ys: Sequence[float], col: str, label: str | None = None, marker: str = "o",
               size: float = 3.5, opacity: float = 0.9,
               titles: Sequence[str | None] | None = None) -> None:
        pts = [(x, y, t) for x, y, t in zip(xs, ys, titles or [None] * len(xs)) if _finite(x) and _finite(y)]
        self.items.append(("points", pts, {"col": col, "marker": marker, "size": size, "opacity": opacity}))
        self._label(label, col, marker)

    def segment(self, x0: float, y0: float, x1: float, y1: float, col: str, width: float = 1.0,
                opacity: float = 0.6) -> None:
        if all(_finite(v) for v in (x0, y0, x1, y1)):
            self.items.append(("line", [(x0, y0), (x1, y1)], {"col": col, "width": width,
                                                                   "opacity": opacity, "dash": None}))

    def _label(self, label, col, marker=None) -> None:
        if label is not None and label not in [lab for lab, _, _ in self.legend]:
            self.legend.append((label, col, marker))

    @property
    def empty(self) -> bool:
        return not any(pts for _, pts, _ in self.items)

    # --- rendering -----------------------------------------------------------------
    def _ranges(self):
        xs: list[float] = []
        ys: list[float] = []
        for kind, pts, _ in self.items:
            for p in pts:
                xs.append(p[0])
                ys.extend(p[1:3] if kind == "band" else [p[1]])
        x0, x1 = (min(xs), max(xs)) if xs else (0, 1)
        y0, y1 = (min(ys), max(ys)) if ys else (0, 1)
        if self.xcats:
            x0, x1 = -0.5, len(self.xcats) - 0.5
        if x1 == x0:
            x0, x1 = x0 - 0.5, x1 + 0.5
        pad = (y1 - y0) * 0.06 or abs(y0) * 0.05 or 0.5
        return x0, x1, y0 - pad, y1 + pad

    def svg(self) -> str:
        x0, x1, y0, y1 = self._ranges()
        m, w, h = self.m, self.w, self.h
        pw, ph = w - m["l"] - m["r"], h - m["t"] - m["b"]

        def sx(x):
            return m["l"] + (x - x0) / (x1 - x0) * pw

        def sy(y):
            return m["t"] + ph - (y - y0) / (y1 - y0) * ph

        out = [(f'<svg class="chart" width="{w}" height="{h}" '
               f'viewBox="0 0 {w} {h}" role="img"><title>{escape(self.title)}</title>'),
               f'<rect x="{m["l"]}" y="{m["t"]}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>']
        for t in nice_ticks(y0, y1):
            out.append(f'<line x1="{m["l"]}" x2="{m["l"] + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" '
                       f'stroke="#eee"/><text x="{m["l"] - 4}" y="{sy(t) + 4:.1f}" text-anchor="end" '
                       f'class="tick">{_fmt(t)}</text>')
        xt = [(i, c) for i, c in enumerate(self.xcats)] if self.xcats else \
            [(t, _fmt(t)) for t in nice_ticks(x0, x1, 6)]
        for t, lab in xt:
            out.append(f'<text x="{sx(t):.1f}" y="{m["t"] + ph + 14}" text-anchor="middle" '
                       f'class="tick">{escape(str(lab))}</text>')
        for kind, pts, o in self.items:
            if not pts:
                continue
            if kind == "band":
                poly = [(sx(x), sy(hi)) for x, _, hi in pts] + [(sx(x), sy(lo)) for x, lo, _ in reversed(pts)]
                out.append(f'<polygon points="{_pts(poly)}" fill="{o["col"]}" fill-opacity="{o["opacity"]}" '
                           f'stroke="none"/>')
            elif kind == "line":
                dash = f' stroke-dasharray="{o["dash"]}"' if o["dash"] else ""
                out.append(f'<polyline points="{_pts([(sx(x), sy(y)) for x, y in pts])}" fill="none" '
                           f'stroke="{o["col"]}" stroke-width="{o["width"]}" stroke-opacity="{o["opacity"]}"'
                           f'{dash}/>')
            else:
                for x, y, title in pts:
                    out.append(_marker(sx(x), sy(y), o, title))
        out.append(f'<text x="{m["l"] + pw / 2}" y="{h - 6}" text-anchor="middle" class="label">'
                   f'{escape(self.xlabel)}</text>')
        out.append(f'<text transform="translate(14,{m["t"] + ph / 2}) rotate(-90)" text-anchor="middle" '
                   f'class="label">{escape(self.ylabel)}</text>')
        out.append(f'<text x="{m["l"]}" y="18" class="ctitle">{escape(self.title)}</text>')
        out.extend(_legend(self.legend, m["l"] + pw - 4, m["t"] + 6))
        out.append("</svg>")
        return "".join(out)


def _pts(pts) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)


def _marker(x, y, o, title) -> str:
    tip = f"<title>{escape(str(title))}</title>" if title else ""
    c, s = o["col"], o["size"]
    if o["marker"] == "x":
        return (f'<g stroke="{c}" stroke-width="2" opacity="{o["opacity"]}"><line x1="{x - s:.1f}" '
                f'y1="{y - s:.1f}" x2="{x + s:.1f}" y2="{y + s:.1f}"/><line x1="{x - s:.1f}" y1="{y + s:.1f}" '
                f'x2="{x + s:.1f}" y2="{y - s:.1f}"/>{tip}</g>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s}" fill="{c}" fill-opacity="{o["opacity"]}">{tip}</circle>'


def _legend(entries, right, top):
    out = []
    for i, (label, col, marker) in enumerate(entries[:10]):
        y = top + 12 * i + 6
        sym = (f'<line x1="{right - 14}" x2="{right - 4}" y1="{y - 3}" y2="{y - 3}" stroke="{col}" '
               f'stroke-width="2"/>' if marker is None else
               _marker(right - 9, y - 3, {"col": col, "marker": marker, "size": 3, "opacity": 1}, None))
        out.append(f'{sym}<text x="{right - 18}" y="{y}" text-anchor="end" class="legend">'
                   f'{escape(str(label))}</text>')
    return out


def hbars(labels: list[str], values: Any, errors: Sequence[float] | None = None, title: str = "", xlabel: str = "",
          width: int = 600, col: str = PALETTE[0]) -> str:
    """Horizontal bars, first label on top (importance)."""
    row, left, top = 22, 150, 28
    h = top + row * len(labels) + 34
    vmax = max([v + (e or 0) for v, e in zip(values, errors or [0] * len(values))] + [1e-12])
    pw = width - left - 20
    out = [(f'<svg class="chart" width="{width}" height="{h}" '
           f'viewBox="0 0 {width} {h}" role="img"><title>{escape(title)}</title>'),
           f'<text x="{left}" y="18" class="ctitle">{escape(title)}</text>']
    for i, (lab, v) in enumerate(zip(labels, values)):
        y = top + i * row
        bw = max(0.0, v) / vmax * pw
        out.append(f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" class="tick">{escape(str(lab))}</text>'
                   f'<rect x="{left}" y="{y + 3}" width="{bw:.1f}" height="{row - 6}" fill="{col}">'
                   f'<title>{escape(str(lab))}: {v:.4g}</title></rect>'
                   f'<text x="{left + bw + 4:.1f}" y="{y + 15}" class="tick">{v:.3g}</text>')
        if errors and errors[i]:
            e = errors[i] / vmax * pw
            out.append(f'<line x1="{left + bw - e:.1f}" x2="{left + bw + e:.1f}" y1="{y + row / 2}" '
                       f'y2="{y + row / 2}" stroke="#333"/>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 6}" text-anchor="middle" class="label">'
               f'{escape(xlabel)}</text></svg>')
    return "".join(out)


def parallel(columns: list[str], rows: list, values: Any, title: str = "", width: int = 720, height: int = 320,
             higher_is_better: bool = True) -> str:
    """Parallel coordinates: one vertical axis per column (numbers scaled to
    their range; categories spread evenly), one polyline per row, coloured by
    ``values`` (best dark, worst light)."""
    m = {"l": 40, "r": 40, "t": 40, "b": 30}
    pw, ph = width - m["l"] - m["r"], height - m["t"] - m["b"]
    k = len(columns)
    axes = []
    for j in range(k):
        col = [r[j] for r in rows]
        nums = [v for v in col if _finite(v) and not isinstance(v, bool)]
        if len(nums) == len([v for v in col if v is not None]) and nums:
            lo, hi = min(nums), max(nums)
            axes.append(("num", lo, hi))
        else:
            cats = sorted({str(v) for v in col}, key=str)
            axes.append(("cat", cats, None))

    def pos(j, v):
        kind, a, b = axes[j]
        if kind == "num":
            if not _finite(v):
                return None
            u = 0.5 if b == a else (v - a) / (b - a)
        else:
            u = (a.index(str(v)) + 0.5) / len(a)
        return m["t"] + ph - u * ph

    fin = [v for v in values if _finite(v)]
    vlo, vhi = (min(fin), max(fin)) if fin else (0, 1)
    x = [m["l"] + (j / max(1, k - 1)) * pw for j in range(k)]
    out = [(f'<svg class="chart" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img"><title>{escape(title)}</title>'),
           f'<text x="{m["l"]}" y="18" class="ctitle">{escape(title)}</text>']
    order = sorted(range(len(rows)), key=lambda i: (values[i] if _finite(values[i]) else -math.inf)
                   * (1 if higher_is_better else -1))
    for i in order:  # best drawn last, on top
        v = values[i]
        t = 0.0 if not _finite(v) or vhi == vlo else (v - vlo) / (vhi - vlo)
        if not higher_is_better:
            t = 1 - t
        pts = [(x[j], pos(j, rows[i][j])) for j in range(k)]
        pts = [p for p in pts if p[1] is not None]
        shade = int(220 - 190 * t)
        out.append(f'<polyline points="{_pts(pts)}" fill="none" stroke="rgb({shade},{shade},255)" '
                   f'stroke-width="1.3" stroke-opacity="0.8"/>')
    for j, name in enumerate(columns):
        kind, a, b = axes[j]
        out.append(f'<line x1="{x[j]:.1f}" x2="{x[j]:.1f}" y1="{m["t"]}" y2="{m["t"] + ph}" stroke="#444"/>'
                   f'<text x="{x[j]:.1f}" y="{m["t"] - 8}" text-anchor="middle" class="label">{escape(name)}</text>')
        labels = ([(a, _fmt(a)), (b, _fmt(b))] if kind == "num" else [(c, c) for c in a])
        for v, lab in labels:
            y = pos(j, v)
            out.append(f'<text x="{x[j] + 4:.1f}" y="{y + 4:.1f}" class="tick">{escape(lab)}</text>')
    out.append("</svg>")
    return "".join(out)
