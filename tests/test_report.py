"""The shared report helpers: tables, log axes, colours and the page shell."""
from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from fatnas.report import COLORS, html_table, log_axis, page_html, palette_color, proxy_accuracy_label


def test_html_table_formats_escapes_and_marks_missing_values():
    frame = pd.DataFrame(dict(name=["a<b", "c"], r2=[0.123456, math.nan], share=[0.5, 0.25], n=[3, 4]))
    text = html_table(frame, "fits", dict(share="{:.0%}"))
    assert text.startswith('<table class="summary" id="fits">')
    assert "<th>name</th><th>r2</th><th>share</th><th>n</th>" in text
    assert "<td>a&lt;b</td><td>0.123</td><td>50%</td><td>3</td>" in text  # floats: 3 digits unless told
    assert "<td>c</td><td>-</td><td>25%</td><td>4</td>" in text
    assert html_table(frame.iloc[0:0]) == ""


def test_log_axis_holds_every_positive_value_with_a_margin():
    axis = log_axis([10.0, 1000.0, None, 0.0, -5.0, math.nan])
    low, high = axis["range"]
    assert axis["type"] == "log" and low < 1 and high > 3 and high - low == 2 + 2 * 0.1
    one = log_axis([5.0, 5.0], min_pad=0.2)["range"]  # one repeated value still spans an axis
    assert one == [math.log10(5) - 0.2, math.log10(5) + 0.2]
    assert log_axis([]) == dict(type="log")


def test_colours_cycle_and_the_accuracy_label_never_says_imagenet():
    assert palette_color(0) == COLORS[0] and palette_color(len(COLORS)) == COLORS[0]
    label = proxy_accuracy_label(["fashion-mnist", "cifar10", "fashion-mnist"])
    assert label == "proxy accuracy (cifar10 / fashion-mnist)"
    assert proxy_accuracy_label([]) == "proxy accuracy (unknown data set)"


def test_page_inlines_plotly_once_and_gives_each_figure_its_div():
    figures = [(f"plot-{i}", go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), f"Plot {i}") for i in range(2)]
    page = page_html("a <title>", "<p>intro</p>", figures)
    assert page.count("plotly.js v") == 1 and "<script src=" not in page
    assert 'id="plot-0"' in page and 'id="plot-1"' in page and "<h2>Plot 1</h2>" in page
    assert "<title>a &lt;title&gt;</title>" in page and "<p>intro</p>" in page
