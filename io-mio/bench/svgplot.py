"""Line charts as plain SVG, for the comparison script (no plotting library needed).

A chart has a log-scale y axis (the figures compared span orders of magnitude), and an x axis
that is either logarithmic or a row of evenly spaced categories (0, 1k, 10k, ...: a log scale
that also has a place for zero).
"""

import math
from xml.sax.saxutils import escape

# One colour per broker, stable across charts.
COLOURS = {
    "midge": "#d62728",
    "mosquitto": "#1f77b4",
    "mosquitto-nagle": "#17becf",
    "rumqttd": "#2ca02c",
}
FALLBACK_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 90, 170, 50, 60


def colour(name, index):
    return COLOURS.get(name, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


class LogAxis:
    """Maps values to [0, 1] on a log10 scale, with ticks at 1, 2 and 5 times powers of ten."""

    def __init__(self, low, high):
        low, high = max(low, 1e-12), max(high, 1e-12)
        if high <= low:
            high = low * 10
        self.lo = math.floor(math.log10(low) * 4) / 4
        self.hi = math.ceil(math.log10(high) * 4) / 4
        if self.hi - self.lo < 0.5:
            self.hi = self.lo + 0.5

    def position(self, value):
        return (math.log10(max(value, 1e-12)) - self.lo) / (self.hi - self.lo)

    def ticks(self):
        steps = (1, 2, 5) if self.hi - self.lo <= 3 else (1,)
        ticks = []
        for power in range(math.floor(self.lo), math.ceil(self.hi) + 1):
            for step in steps:
                value = step * 10.0**power
                if self.lo - 1e-9 <= math.log10(value) <= self.hi + 1e-9:
                    ticks.append((value, number_label(value)))
        return ticks


class CategoryAxis:
    """Evenly spaced categories, each a value with its label."""

    def __init__(self, values, labels):
        self.values = list(values)
        self.labels = list(labels)

    def position(self, value):
        i = self.values.index(value)
        return (i + 0.5) / len(self.values)

    def ticks(self):
        return list(zip(self.values, self.labels))


class NinesAxis:
    """Cumulative fraction on a 'nines' scale: 0, 90%, 99%, 99.9%, ... evenly spaced, so a
    latency distribution's tail is as visible as its median."""

    def __init__(self, nines):
        self.nines = nines

    def position(self, fraction):
        return min(-math.log10(max(1.0 - fraction, 10.0**-self.nines)), self.nines) / self.nines

    def ticks(self):
        labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        return [(1.0 - 10.0**-n, labels[n]) for n in range(self.nines + 1)]


def number_label(value):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def chart(title, x_label, y_label, x_axis, y_axis, series, note=""):
    """An SVG document: `series` is a list of (name, [(x, y), ...]) drawn as lines with markers
    (markers=False in a third element draws a plain line, for dense curves)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x):
        return LEFT + x_axis.position(x) * plot_w

    def py(y):
        return TOP + (1.0 - y_axis.position(y)) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    for value, label in y_axis.ticks():
        y = py(value)
        out.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for value, label in x_axis.ticks():
        x = px(value)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{TOP + plot_h + 18}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#444"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 18}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text transform="translate(22 {TOP + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for i, entry in enumerate(series):
        name, points = entry[0], entry[1]
        markers = entry[2] if len(entry) > 2 else True
        c = colour(name, i)
        if points:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>'
            )
            if markers:
                for x, y in points:
                    out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{c}"/>')
        ly = TOP + 10 + 20 * i
        lx = LEFT + plot_w + 14
        out.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{c}" stroke-width="3"/>'
        )
        out.append(f'<text x="{lx + 28}" y="{ly + 4}">{escape(name)}</text>')
    if note:
        out.append(
            f'<text x="{LEFT}" y="{TOP - 8}" font-size="11" fill="#555">{escape(note)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
