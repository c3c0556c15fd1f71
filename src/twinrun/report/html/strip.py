"""A strip plot for the study pages: every run's value as a dot, per group, with the group's
mean and its confidence interval beside the dots.

With 2 to 50 runs per group, the dots themselves are the honest picture (a box plot of five
values invents quartiles); the interval says how well the mean is known. Like `svg`, it is
inline SVG with every label escaped, and each dot carries `class="data"`.
"""

from twinrun.report.html.page import escape
from twinrun.report.html.svg import (BOTTOM, HEIGHT, LEFT, MARK_COLOURS, PALETTE, RIGHT, TOP,
                                     WIDTH, _finite, _linear_ticks, _short, _svg, _text,
                                     _tick_label)

# Spreads a group's dots sideways without randomness: the same runs draw the same picture.
_GOLDEN = 0.6180339887498949


def strip_chart(groups, *, title, y_label, reference=None, width=WIDTH, height=HEIGHT,
                y_range=(None, None)):
    """One column of dots per group, each with its mean and an interval drawn as an error bar.

    Arguments:
        groups: a list of `(label, points, mean, interval)`: `points` a list of `(name, value)`
            (the name shows when the pointer rests on the dot), `mean` a number or None,
            `interval` a `(low, high)` pair or None.
        title, y_label: text on the chart (escaped).
        reference: `(value, label)` drawn as a dashed horizontal line (e.g. zero difference).
        width, height: the viewBox.
        y_range: the metric's range, `(low, high)` (None: open on that side): the axis never
            leaves it, and an interval reaching past it is cut at its edge.

    Example:
    >>> svg = strip_chart([("init", [("init/0", 0.90), ("init/1", 0.92)], 0.91, (0.80, 1.02))],
    ...                   title="test accuracy", y_label="accuracy")
    >>> svg.count('class="data"')
    2
    """
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM - 20
    parts = [_text(width / 2, 20, title, size=14, weight="600")]
    values = [v for _, points, _, _ in groups for _, v in points if _finite(v)]
    bounds = [b for _, _, _, interval in groups if interval for b in interval if _finite(b)]
    if reference and _finite(reference[0]):
        bounds.append(reference[0])
    if not values:
        parts.append(_text(width / 2, height / 2, "no values to plot", fill="#5b6673"))
        return _svg(width, height, title, "".join(parts))
    y_low, y_high = min(values + bounds), max(values + bounds)
    # Equal values (a source with no effect) still get a readable axis around them, and a
    # spread of a few ulps (float noise in a mean) is not blown up to fill the plot.
    pad = max((y_high - y_low) * 0.06, abs(y_high) * 1e-3, 1e-6)
    y_low, y_high = y_low - pad, y_high + pad
    floor, ceiling = y_range
    if floor is not None:
        y_low = max(y_low, floor)
    if ceiling is not None:
        y_high = min(y_high, ceiling)
    if y_high <= y_low:
        y_high = y_low + 1e-6

    def clamped(y):
        return min(max(y, y_low), y_high)

    def y_pos(y):
        return TOP + plot_h * (1 - (y - y_low) / (y_high - y_low))

    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff" '
                 f'stroke="#d8dee6"/>')
    for tick in _linear_ticks(y_low, y_high):
        if not y_low <= tick <= y_high:
            continue
        y = y_pos(tick)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#eef1f5"/>')
        parts.append(_text(LEFT - 6, y + 4, _tick_label(tick), anchor="end"))
    if reference and _finite(reference[0]):
        y = y_pos(reference[0])
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="{MARK_COLOURS[0]}" stroke-dasharray="6 4" stroke-width="1.5"/>')
        parts.append(_text(LEFT + plot_w - 4, y - 5, reference[1], anchor="end",
                           fill=MARK_COLOURS[0], size=11))
    slot = plot_w / max(len(groups), 1)
    for i, (label, points, mean, interval) in enumerate(groups):
        colour = PALETTE[i % len(PALETTE)]
        centre = LEFT + slot * (i + 0.5)
        dots_at = centre - slot * 0.12
        spread = min(slot * 0.2, 40)
        for j, (name, value) in enumerate(points):
            if not _finite(value):
                continue
            x = dots_at + spread * (((j * _GOLDEN) % 1.0) - 0.5) * 2
            parts.append(f'<circle class="data" cx="{x:.1f}" cy="{y_pos(value):.1f}" r="4" '
                         f'fill="{colour}" fill-opacity="0.65" stroke="{colour}">'
                         f"<title>{escape(name)}: {escape(f'{value:.6g}')}</title></circle>")
        bar_x = centre + min(slot * 0.22, 48)
        if interval and _finite(interval[0]) and _finite(interval[1]):
            low, high = y_pos(clamped(interval[0])), y_pos(clamped(interval[1]))
            parts.append(f'<path class="interval" d="M{bar_x:.1f} {low:.1f}V{high:.1f}'
                         f'M{bar_x - 6:.1f} {low:.1f}h12M{bar_x - 6:.1f} {high:.1f}h12" '
                         f'stroke="#1d232b" fill="none" stroke-width="1.5"/>')
        if _finite(mean):
            y = y_pos(mean)
            parts.append(f'<path class="mean" d="M{bar_x - 5:.1f} {y:.1f}l5 -5l5 5l-5 5z" '
                         f'fill="#1d232b"/>')
        count = sum(1 for _, v in points if _finite(v))
        parts.append(_text(centre, TOP + plot_h + 16, _short(label, 16), size=11))
        parts.append(_text(centre, TOP + plot_h + 30, f"n = {count}", size=10, fill="#5b6673"))
    parts.append(_text(14, TOP + plot_h / 2, y_label, fill="#5b6673", rotate=-90))
    return _svg(width, height, title, "".join(parts))
