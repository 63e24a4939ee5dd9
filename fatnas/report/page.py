"""The one home of fatnas's HTML reports: page shell, styles, colours, tables, axes and axis labels.

The dashboard, scaling and fidelity pages compute small tables first (tested on their own), draw
them with these helpers, and write one self-contained page each (plotly.js inlined once, so the
page opens offline).
"""
from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence

import pandas as pd

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
DEFAULT_HEIGHT = 480

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 28px; }
table.summary { border-collapse: collapse; font-size: 0.9em; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
table.summary th { background: #f3f3f3; }
table.summary td:nth-child(-n+3) { text-align: left; }
p.note { color: #555; max-width: 70em; }
"""


def palette_color(i: int) -> str:
    """The i-th colour of the shared palette (runs, scaling directions), cycling."""
    return COLORS[i % len(COLORS)]


def proxy_accuracy_label(datasets: Iterable[str]) -> str:
    """The accuracy axis title, e.g. `proxy accuracy (fashion-mnist)`: never ImageNet accuracy."""
    names = sorted(set(datasets)) or ["unknown data set"]
    return f"proxy accuracy ({' / '.join(names)})"


def layout(fig: Any, title: str, x_title: str, y_title: str, **options: Any) -> Any:
    """The house layout: titled axes, white template, default height; `options` win (xaxis/yaxis are merged)."""
    options["xaxis"] = dict(title=dict(text=x_title), **options.get("xaxis", {}))
    options["yaxis"] = dict(title=dict(text=y_title), **options.get("yaxis", {}))
    values = dict(title=dict(text=title, x=0.01), height=DEFAULT_HEIGHT, template="plotly_white",
                  margin=dict(l=70, r=20, t=60, b=60))
    fig.update_layout(**dict(values, **options))
    return fig


def log_axis(values: Iterable[float | None], *, min_pad: float = 0.05) -> dict[str, Any]:
    """A log axis whose range holds the positive values with a margin of at least `min_pad` decades.

    An explicit range because plotly's autorange skips shapes (budget lines) and draws no axis
    for one repeated value.
    """
    logs = [math.log10(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not logs:
        return dict(type="log")
    pad = max(min_pad, 0.05 * (max(logs) - min(logs)))
    return dict(type="log", range=[min(logs) - pad, max(logs) + pad])


def html_table(frame: pd.DataFrame, table_id: str | None = None, formats: dict[str, str] | None = None) -> str:
    """A `summary`-styled HTML table; `formats` maps columns to format strings, other floats get 3 digits, NaN is -."""
    if frame.empty:
        return ""
    formats = formats or {}

    def cell(column: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        if column in formats:
            return formats[column].format(value)
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(c, v))}</td>" for c, v in zip(frame.columns, row))
                   + "</tr>" for row in frame.itertuples(index=False))
    id_attr = f" id=\"{html.escape(table_id)}\"" if table_id else ""
    return f"<table class=\"summary\"{id_attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page_html(title: str, intro: str, figures: Sequence[tuple[str, Any, str]]) -> str:
    """One self-contained page: `title`, the `intro` HTML, then a section per (div id, figure, heading)."""
    import plotly.io as pio

    parts = []
    for i, (div_id, fig, heading) in enumerate(figures):
        height = fig.layout.height or DEFAULT_HEIGHT
        div = pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), div_id=div_id, default_height=f"{height}px",
                          config=dict(displaylogo=False, responsive=True))
        parts.append(f"<section><h2>{html.escape(heading)}</h2>\n{div}\n</section>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{intro}\n" + "\n".join(parts) + "\n</body></html>\n")


__all__ = ["COLORS", "CSS", "palette_color", "html_table", "layout", "log_axis", "page_html", "proxy_accuracy_label"]
