#!/usr/bin/env python3
"""Renders shardis/redis ratios as a horizontal bar chart (SVG), for docs/benchmarks.md.

Input (stdin or a file): one bar per line, `label<TAB>ratio`; blank lines and `#` comments are
skipped. A line `## title` starts a new group (drawn as a heading). Bars left of the 1.0 line
mean shardis is below Redis (for CPU and memory: better; for throughput: worse), so each
group's title should say which way is better.

    scripts/bench-chart.py docs/benchmarks.tsv > docs/benchmarks.svg
"""
import sys
from xml.sax.saxutils import escape

BAR_H, GAP, LABEL_W, CHART_W, MAX_RATIO = 18, 6, 260, 420, 2.5


def parse(lines):
    groups, current = [], None
    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip() or line.startswith("# "):
            continue
        if line.startswith("## "):
            current = (line[3:].strip(), [])
            groups.append(current)
            continue
        label, _, value = line.rpartition("\t")
        if current is None:
            current = ("", [])
            groups.append(current)
        current[1].append((label.strip(), float(value)))
    return groups


def render(groups):
    y, out = 10, []
    x0 = LABEL_W
    scale = CHART_W / MAX_RATIO
    for title, bars in groups:
        if title:
            y += 16
            out.append(f'<text x="4" y="{y}" font-weight="bold">{escape(title)}</text>')
            y += 8
        top = y
        for label, ratio in bars:
            w = min(ratio, MAX_RATIO) * scale
            colour = "#3b7dd8"
            out.append(f'<text x="{x0 - 6}" y="{y + BAR_H - 5}" text-anchor="end">{escape(label)}</text>')
            out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{colour}"/>')
            out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + BAR_H - 5}">{ratio:.2f}×</text>')
            y += BAR_H + GAP
        one = x0 + scale
        out.append(f'<line x1="{one:.1f}" y1="{top - 2}" x2="{one:.1f}" y2="{y - GAP + 2}" stroke="#c33" stroke-dasharray="4,3"/>')
        y += 6
    width, height = LABEL_W + CHART_W + 60, y + 10
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="12">')
    return "\n".join([head, f'<rect width="{width}" height="{height}" fill="white"/>', *out, "</svg>", ""])


def main():
    src = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    sys.stdout.write(render(parse(src)))


if __name__ == "__main__":
    main()
