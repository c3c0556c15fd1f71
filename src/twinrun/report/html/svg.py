"""Small inline SVG plots for the HTML reports: line charts (linear or log y), heatmaps, bars.

Made in Python, with no plotting library and no script: the report is one file that shows the
same in any browser, offline. Every label goes through `escape`; the `<svg>` has no `xmlns`
because inline SVG in HTML needs none (and the page holds no URL at all).

Drawn values carry `class="data"` (lines, dots, heatmap cells, bars), so a test can tell a plot
with values from an empty frame.

A line with more points than `MAX_POINTS` is thinned to the lowest and highest value of each
bucket of x, so a 150,000-step loss curve keeps its envelope and the page stays small.
"""

import math

from twinrun.report.html.page import Html, escape

MAX_POINTS = 600
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22")
MARK_COLOURS = ("#c62828", "#1a7f37", "#9a6700", "#5b6673")

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 50, 48


def _svg(width, height, title, body):
    return Html(f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
                f'font-family="system-ui, sans-serif" font-size="12">'
                f"<title>{escape(title)}</title>{body}</svg>")


def _text(x, y, content, anchor="middle", size=None, weight=None, fill="#1d232b", rotate=None):
    extra = f' font-size="{size}"' if size else ""
    extra += f' font-weight="{weight}"' if weight else ""
    extra += f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f"{escape(content)}</text>")


def thin(xs, ys, max_points=MAX_POINTS):
    """At most about `max_points` (x, y) pairs keeping each bucket's lowest and highest y.

    Arguments:
        xs, ys: equal-length sequences of numbers (x increasing).
        max_points: the budget; shorter inputs come back unchanged.

    Example:
    >>> len(thin(range(10_000), [i % 7 for i in range(10_000)], max_points=100))
    100
    """
    points = list(zip(xs, ys))
    if len(points) <= max_points:
        return points
    buckets = max_points // 2
    size = len(points) / buckets
    kept = []
    for b in range(buckets):
        chunk = points[int(b * size):int((b + 1) * size)]
        if not chunk:
            continue
        low = min(chunk, key=lambda p: p[1])
        high = max(chunk, key=lambda p: p[1])
        kept.extend(sorted({low, high}, key=lambda p: p[0]))
    return kept


def _nice_step(span, target=5):
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _linear_ticks(low, high):
    if high <= low:
        return [low]
    step = _nice_step(high - low)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _tick_label(value, log=False):
    if log:
        return f"1e{int(round(math.log10(value)))}"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:.6g}"


def _finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value)


def line_chart(series, *, title, x_label, y_label, log_y=False, marks=(), width=WIDTH,
               height=HEIGHT):
    """A line chart as inline SVG.

    Arguments:
        series: a list of `(label, xs, ys)`; None, NaN and (with `log_y`) values <= 0 are left
            out, so a gap shows where a value is missing.
        title, x_label, y_label: text on the chart (escaped).
        log_y: a base-10 logarithmic y axis.
        marks: `(x, label)` pairs drawn as labelled vertical lines (e.g. the best epoch).
        width, height: the viewBox; the page scales the chart to its column.

    Example:
    >>> svg = line_chart([("loss", [1, 2, 3], [0.9, 0.5, 0.4])], title="loss",
    ...                  x_label="epoch", y_label="loss", marks=[(2, "best")])
    >>> svg.startswith("<svg") and "<polyline" in svg
    True
    """
    cleaned = []
    for label, xs, ys in series:
        points = [(float(x), float(y)) for x, y in zip(xs, ys)
                  if _finite(x) and _finite(y) and (y > 0 or not log_y)]
        cleaned.append((label, thin([p[0] for p in points], [p[1] for p in points])))
    all_points = [p for _, points in cleaned for p in points]
    mark_xs = [float(x) for x, _ in marks if _finite(x)]
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    parts = [_text(width / 2, 20, title, size=14, weight="600")]
    if not all_points:
        parts.append(_text(width / 2, height / 2, "no values to plot", fill="#5b6673"))
        return _svg(width, height, title, "".join(parts))
    x_low = min([p[0] for p in all_points] + mark_xs)
    x_high = max([p[0] for p in all_points] + mark_xs)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    ys = [p[1] for p in all_points]
    if log_y:
        y_low = 10 ** math.floor(math.log10(min(ys)))
        y_high = 10 ** math.ceil(math.log10(max(ys)))
        if y_high == y_low:
            y_high *= 10

        def y_pos(y):
            return TOP + plot_h * (1 - (math.log10(y) - math.log10(y_low)) /
                                   (math.log10(y_high) - math.log10(y_low)))

        decades = int(round(math.log10(y_high / y_low)))
        stride = max(1, math.ceil(decades / 8))
        y_ticks = [y_low * 10 ** k for k in range(0, decades + 1, stride)]
    else:
        y_low, y_high = min(ys), max(ys)
        pad = (y_high - y_low) * 0.05 or abs(y_high) * 0.05 or 1.0
        y_low, y_high = y_low - pad, y_high + pad
        y_ticks = [t for t in _linear_ticks(y_low, y_high) if y_low <= t <= y_high]

        def y_pos(y):
            return TOP + plot_h * (1 - (y - y_low) / (y_high - y_low))

    def x_pos(x):
        return LEFT + plot_w * (x - x_low) / (x_high - x_low)

    # Axes, grid and ticks.
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
                 f'stroke="#d8dee6"/>')
    for tick in y_ticks:
        y = y_pos(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eef1f5"/>')
        parts.append(_text(LEFT - 6, y + 4, _tick_label(tick, log_y), anchor="end"))
    integer_x = all(float(p[0]).is_integer() for p in all_points)
    for tick in _linear_ticks(x_low, x_high):
        if integer_x and not float(tick).is_integer():
            continue
        x = x_pos(tick)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" '
                     f'y2="{TOP + plot_h + 4}" stroke="#5b6673"/>')
        parts.append(_text(x, TOP + plot_h + 17, _tick_label(tick)))
    parts.append(_text(LEFT + plot_w / 2, height - 8, x_label, fill="#5b6673"))
    parts.append(_text(14, TOP + plot_h / 2, y_label + (" (log scale)" if log_y else ""),
                       fill="#5b6673", rotate=-90))
    # Marks under the lines, labelled at the top.
    for i, (x, label) in enumerate((float(x), label) for x, label in marks if _finite(x)):
        colour = MARK_COLOURS[i % len(MARK_COLOURS)]
        xp = x_pos(x)
        parts.append(f'<line class="mark" x1="{xp:.1f}" x2="{xp:.1f}" y1="{TOP}" '
                     f'y2="{TOP + plot_h}" stroke="{colour}" stroke-width="1.5" '
                     f'stroke-dasharray="5 4"/>')
        anchor = "end" if xp > LEFT + plot_w * 0.6 else "start"
        parts.append(_text(xp + (-4 if anchor == "end" else 4), TOP + 14 + 14 * i, label,
                           anchor=anchor, fill=colour, size=11))
    # The lines, and a dot where a series has a single point.
    for i, (label, points) in enumerate(cleaned):
        colour = PALETTE[i % len(PALETTE)]
        if len(points) == 1:
            x, y = points[0]
            parts.append(f'<circle class="data" cx="{x_pos(x):.1f}" cy="{y_pos(y):.1f}" r="3.5" '
                         f'fill="{colour}"/>')
        elif points:
            coords = " ".join(f"{x_pos(x):.1f},{y_pos(y):.1f}" for x, y in points)
            # Every other line dashed, and the first drawn widest: replicas that agree to the
            # last bit lie on top of each other and must still all show.
            dash = ' stroke-dasharray="6 3"' if i % 2 else ""
            stroke = 3.0 if i == 0 and len(cleaned) > 1 else 1.6
            parts.append(f'<polyline class="data" points="{coords}" fill="none" stroke="{colour}" '
                         f'stroke-width="{stroke}" stroke-linejoin="round"{dash}/>')
    # Legend: one row between the title and the plot, so it never hides a line or a mark.
    if len(cleaned) > 1 or (cleaned and cleaned[0][0]):
        x = LEFT
        for i, (label, _) in enumerate(cleaned):
            colour = PALETTE[i % len(PALETTE)]
            dash = ' stroke-dasharray="6 3"' if i % 2 else ""
            parts.append(f'<line x1="{x:.1f}" x2="{x + 20:.1f}" y1="{TOP - 14}" y2="{TOP - 14}" '
                         f'stroke="{colour}" stroke-width="2.5"{dash}/>')
            parts.append(_text(x + 24, TOP - 10, label, anchor="start", size=11))
            x += 40 + 6.5 * len(str(label))
    return _svg(width, height, title, "".join(parts))


def heatmap(matrix, *, title, row_labels, column_labels, x_label="", y_label="", width=640):
    """A matrix of counts as a heatmap with each count written in its cell.

    Arguments:
        matrix: rows of numbers (e.g. a confusion matrix: true class by row, predicted by column).
        title, x_label, y_label: text on the chart (escaped).
        row_labels, column_labels: one name per row and column (escaped).
        width: the viewBox width; the height follows from the number of rows.

    Example:
    >>> svg = heatmap([[5, 1], [0, 6]], title="confusion", row_labels=["a", "b"],
    ...               column_labels=["a", "b"])
    >>> svg.count("<rect") >= 4
    True
    """
    rows = len(matrix)
    columns = max((len(row) for row in matrix), default=0)
    label_w = 110
    top = 70
    cell = max(12.0, min(48.0, (width - label_w - 16) / max(columns, 1)))
    height = int(top + cell * rows + 40)
    parts = [_text(width / 2, 20, title, size=14, weight="600")]
    if not rows or not columns:
        parts.append(_text(width / 2, 50, "no values to plot", fill="#5b6673"))
        return _svg(width, 80, title, "".join(parts))
    values = [float(v) for row in matrix for v in row if _finite(v)]
    highest = max(values, default=0) or 1.0
    small = cell < 30
    for j, name in enumerate(column_labels[:columns]):
        x = label_w + cell * (j + 0.5)
        parts.append(_text(x, top - 6, _short(name, 12), anchor="start", size=10, rotate=-45))
    for i, row in enumerate(matrix):
        y = top + cell * i
        parts.append(_text(label_w - 6, y + cell / 2 + 4,
                           _short(row_labels[i] if i < len(row_labels) else i, 16), anchor="end",
                           size=11))
        for j, value in enumerate(row):
            x = label_w + cell * j
            share = (float(value) / highest) if _finite(value) else 0.0
            fill = _blue(share)
            parts.append(f'<rect class="data" x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                         f'fill="{fill}" stroke="#fff"/>')
            if not small:
                parts.append(_text(x + cell / 2, y + cell / 2 + 4, _count(value),
                                   fill="#fff" if share > 0.55 else "#1d232b", size=11))
    if x_label:
        parts.append(_text(label_w + cell * columns / 2, height - 10, x_label, fill="#5b6673"))
    if y_label:
        parts.append(_text(12, top + cell * rows / 2, y_label, fill="#5b6673", rotate=-90))
    return _svg(width, height, title, "".join(parts))


def bar_chart(bars, *, title, y_label, reference=None, width=WIDTH, height=HEIGHT):
    """Vertical bars with optional error bars and a horizontal reference line.

    Arguments:
        bars: a list of `(label, value)` or `(label, value, low, high)` (an interval drawn as an
            error bar).
        title, y_label: text on the chart (escaped).
        reference: `(value, label)` drawn as a dashed horizontal line (e.g. a noise floor).

    Example:
    >>> svg = bar_chart([("init", 0.4, 0.3, 0.5), ("data", 0.2)], title="share",
    ...                 y_label="variance share", reference=(0.1, "floor"))
    >>> svg.count('class="bar data"')
    2
    """
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM - 20
    parts = [_text(width / 2, 20, title, size=14, weight="600")]
    values = [v for bar in bars for v in bar[1:] if _finite(v)]
    if reference and _finite(reference[0]):
        values.append(reference[0])
    if not bars or not values:
        parts.append(_text(width / 2, height / 2, "no values to plot", fill="#5b6673"))
        return _svg(width, height, title, "".join(parts))
    y_low, y_high = min(0.0, min(values)), max(values) * 1.08 or 1.0

    def y_pos(y):
        return TOP + plot_h * (1 - (y - y_low) / (y_high - y_low))

    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
                 f'stroke="#d8dee6"/>')
    for tick in _linear_ticks(y_low, y_high):
        y = y_pos(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eef1f5"/>')
        parts.append(_text(LEFT - 6, y + 4, _tick_label(tick), anchor="end"))
    slot = plot_w / len(bars)
    for i, bar in enumerate(bars):
        label, value = bar[0], bar[1]
        x = LEFT + slot * i + slot * 0.15
        if _finite(value):
            top, base = y_pos(max(value, 0)), y_pos(min(value, 0))
            parts.append(f'<rect class="bar data" x="{x:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" '
                         f'height="{max(base - top, 0.5):.1f}" fill="{PALETTE[0]}"/>')
        if len(bar) >= 4 and _finite(bar[2]) and _finite(bar[3]):
            centre = x + slot * 0.35
            low, high = y_pos(bar[2]), y_pos(bar[3])
            parts.append(f'<path d="M{centre:.1f} {low:.1f}V{high:.1f}M{centre - 6:.1f} '
                         f'{low:.1f}h12M{centre - 6:.1f} {high:.1f}h12" stroke="#1d232b" '
                         f'fill="none" stroke-width="1.3"/>')
        parts.append(_text(x + slot * 0.35, TOP + plot_h + 16, _short(label, 14), size=11))
    if reference and _finite(reference[0]):
        y = y_pos(reference[0])
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{MARK_COLOURS[0]}" stroke-dasharray="6 4" stroke-width="1.5"/>')
        parts.append(_text(LEFT + plot_w - 4, y - 5, reference[1], anchor="end",
                           fill=MARK_COLOURS[0], size=11))
    parts.append(_text(14, TOP + plot_h / 2, y_label, fill="#5b6673", rotate=-90))
    return _svg(width, height, title, "".join(parts))


def _blue(share):
    """White to dark blue, for a share in [0, 1]."""
    share = min(max(share, 0.0), 1.0)
    low, high = (247, 251, 255), (8, 48, 107)
    r, g, b = (round(a + (z - a) * share ** 0.6) for a, z in zip(low, high))
    return f"#{r:02x}{g:02x}{b:02x}"


def _count(value):
    if not _finite(value):
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:.2g}"


def _short(value, width):
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"
