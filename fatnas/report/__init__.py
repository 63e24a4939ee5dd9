"""Report layer: the one HTML page shell (`page`, a leaf every report imports) and the run dashboard (`dashboard`,
which may import every other layer).

`fatnas.report` was the page shell's module before the layer packages; its names stay importable from here.
"""
from .page import COLORS, CSS, html_table, layout, log_axis, page_html, palette_color, proxy_accuracy_label

__all__ = ["COLORS", "CSS", "palette_color", "html_table", "layout", "log_axis", "page_html", "proxy_accuracy_label"]
