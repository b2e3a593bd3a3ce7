"""A PNG chart of one benchmark suite run: throughput bars, latency percentiles, rate sweeps.

matplotlib is an optional extra (``pip install -e '.[bench]'``): it is imported only when a
chart is drawn, and ``write_chart`` returns a one-line reason instead of failing when it is
missing or when the document has nothing to plot.

The document is read first into plain records (``chart_data``), with every key optional, so a
partial document from a run that failed halfway is drawn as far as it goes; the drawing comes
after and never looks at the document again.
"""

from __future__ import annotations

import datetime as dt
import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness.sweep import SweepPoint

MISSING_MATPLOTLIB = "no chart: matplotlib is not installed (pip install -e '.[bench]')"
NOTHING_TO_PLOT = "no chart: the document has no throughput, latency or sweep data"

FIGSIZE = (16.0, 10.0)
DPI = 100
"""1600x1000 px: readable on a laptop screen without zooming, small enough to attach."""

PERCENTILES = (("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))
PERCENTILES += (("max", "max_ms"),)

ENGINE_COLOUR = "#2563eb"
BASELINE_COLOUR = "#a3aab4"
FAILED_COLOUR = "#c0392b"
PASS_COLOUR = "#16a34a"

SPREAD_FOR_LOG = 20
"""Largest/smallest value above which an axis goes logarithmic to keep both readable."""

LABEL_CHARS = 42
"""Longest bar label before it wraps; longer ones would squeeze the bars off the panel."""

CROWDED_LEGEND = 4
"""Latency lines beyond which their legend moves below the panel instead of over it."""

LEGEND_CHARS = 48
"""Longest latency legend label, when the legend sits below the panel in two columns,
before it wraps: wider, the legend would outgrow the panel and squeeze it."""

HEADING_ROWS = 0.9
"""Height, in bar rows, of a scenario's heading where several scenarios share a unit panel."""

HEADING_COLOUR = "#6b7280"

TITLE_CHARS = 150
"""A title line's length that fits the figure's width at the title's font size."""

FAILURE_CHARS = 70
"""How much of a failure message the title keeps: it is one line of context, not a log."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One throughput figure; ``value`` is None for a failed scenario's missing number."""

    scenario: str
    label: str
    value: float | None
    unit: str
    baseline: bool
    failed: bool


@dataclass(frozen=True, slots=True)
class LatencyLine:
    """One latency measurement: milliseconds at each of ``PERCENTILES`` (NaN when absent)."""

    scenario: str
    label: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Sweep:
    """Offered rates tried by one scenario, with the bound they were held to."""

    scenario: str
    title: str
    points: tuple[SweepPoint, ...]
    bound_ms: float | None
    best_rate: float | None


@dataclass(slots=True)
class ChartData:
    """What the chart shows, read out of a suite document."""

    title: str
    bars: list[Bar] = field(default_factory=list)
    latency: list[LatencyLine] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.bars or self.latency or self.sweeps)


def write_chart(document: dict[str, Any], path: Path) -> str | None:
    """Draw ``document`` into a PNG at ``path``; return None, or why no chart was written."""
    data = chart_data(document)
    if data.empty:
        return NOTHING_TO_PLOT
    try:
        # Imported here, not at the top: the suite runs and reports without the extra.
        import matplotlib  # noqa: F401  (fails first and alone when it is missing)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return MISSING_MATPLOTLIB
    # A bare Figure on an Agg canvas rather than pyplot: no screen is needed, no global
    # backend is switched under a caller that uses pyplot, and nothing is left to close.
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    _draw(fig, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return None


# -- reading the document ------------------------------------------------------------------


def chart_data(document: object) -> ChartData:
    """The chart's records from a suite document; missing or malformed parts are skipped."""
    doc = _dict(document)
    data = ChartData(title=_title(doc))
    for scenario in map(_dict, _list(doc.get("scenarios"))):
        name = _text(scenario.get("name")) or "?"
        status = _text(scenario.get("status")) or "ok"
        failed = status != "ok"
        if failed:
            failure = _text(scenario.get("failure")).partition("\n")[0]
            data.failed.append(f"{name} ({_shorten(failure, FAILURE_CHARS) or status})")
        data.bars.extend(_bars(name, scenario.get("throughput"), failed))
        data.latency.extend(_latency(name, scenario.get("latency")))
        sweep = _sweep(name, _text(scenario.get("title")) or name, scenario.get("sweep"))
        if sweep is not None:
            data.sweeps.append(sweep)
    return data


def _title(doc: dict[str, Any]) -> str:
    machine = _dict(doc.get("machine"))
    params = _dict(doc.get("params"))
    parts = [_text(doc.get("suite")) or "benchmark", _when(doc.get("started"))]
    if commit := _text(machine.get("commit")):
        parts.append(f"commit {commit}")
    if (cpus := _number(machine.get("cpus"))) is not None:
        parts.append(f"{cpus:g} CPU{'s' if cpus != 1 else ''}")
    if python := _text(machine.get("python")):
        parts.append(f"Python {python}")
    if (seconds := _number(doc.get("seconds"))) is not None:
        parts.append(f"{seconds:,.0f} s")
    if params.get("quick") is True:
        parts.append("quick run")
    return "  ·  ".join(part for part in parts if part)


def _when(started: object) -> str:
    text = _text(started)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _bars(scenario: str, entries: object, failed: bool) -> Iterable[Bar]:
    for entry in map(_dict, _list(entries)):
        value = _number(entry.get("value"))
        if value is None and not failed:
            continue
        yield Bar(
            scenario=scenario,
            label=_text(entry.get("label")) or scenario,
            value=value,
            unit=_text(entry.get("unit")) or "per second",
            baseline=entry.get("kind") == "baseline",
            failed=failed,
        )


def _latency(scenario: str, entries: object) -> Iterable[LatencyLine]:
    for entry in map(_dict, _list(entries)):
        values = tuple(_positive(entry.get(key)) for _, key in PERCENTILES)
        if all(math.isnan(v) for v in values):
            continue
        label = _text(entry.get("label")) or scenario
        yield LatencyLine(scenario=scenario, label=label, values=values)


def _sweep(scenario: str, title: str, raw: object) -> Sweep | None:
    sweep = _dict(raw)
    bound = _number(sweep.get("bound_ms"))
    points = []
    for point in map(_dict, _list(sweep.get("points"))):
        rate, p99 = _number(point.get("rate")), _positive(point.get("p99_ms"))
        if rate is None or math.isnan(p99):
            continue
        ok = point.get("ok")
        if not isinstance(ok, bool):
            ok = bound is None or p99 <= bound
        points.append(SweepPoint(rate, p99, ok))
    if not points:
        return None
    points.sort(key=lambda p: p.rate)
    best = _number(sweep.get("best_rate"))
    return Sweep(scenario, title, tuple(points), bound, best)


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond a float's range
        return None
    return number if math.isfinite(number) else None


def _positive(value: object) -> float:
    """A value a log axis can show, or NaN (which breaks the line there)."""
    number = _number(value)
    return number if number is not None and number > 0 else math.nan


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def si(value: float) -> str:
    """``13100.0`` -> ``"13.1k"``: three significant digits and a metric suffix."""
    value = float(f"{value:.3g}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


# -- drawing --------------------------------------------------------------------------------


def _draw(fig: Any, data: ChartData) -> None:
    title = data.title
    if data.failed:
        title += "\n" + "\n".join(textwrap.wrap("failed: " + ", ".join(data.failed), TITLE_CHARS))
    fig.suptitle(title, fontsize=15, fontweight="bold")
    side = len(data.sweeps) + (1 if data.latency else 0)
    if data.bars and side:
        left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1], wspace=0.04)
        _draw_throughput(left, data.bars)
        # The latency panel carries a legend line per entry (below it when there are many):
        # give it more room than a sweep.
        crowded = len(data.latency) > CROWDED_LEGEND
        heights = [1.9 if crowded else 1.5] * bool(data.latency) + [1.0] * len(data.sweeps)
        axes = right.subplots(side, 1, squeeze=False, height_ratios=heights)[:, 0]
    elif data.bars:
        # In a subfigure of its own, so its legend sits under the title, not over it.
        _draw_throughput(fig.subfigures(1, 1), data.bars)
        return
    else:
        columns = min(side, 2)
        grid = fig.subplots(math.ceil(side / columns), columns, squeeze=False)
        axes = grid.flatten()
        for spare in axes[side:]:
            spare.set_visible(False)
    if data.latency:
        _draw_latency(axes[0], data.latency)
        axes = axes[1:]
    for ax, sweep in zip(axes, data.sweeps, strict=True):
        _draw_sweep(ax, sweep)


def _draw_throughput(fig: Any, bars: list[Bar]) -> None:
    from matplotlib.patches import Patch

    units: dict[str, list[Bar]] = {}
    for bar in bars:
        units.setdefault(bar.unit, []).append(bar)
    # Units differ by orders of magnitude: one panel each, sized by its number of bars,
    # so that within a unit (where engine and baseline are compared) the axis can be linear.
    heights = [_rows(group)[-1] + 1.6 for group in units.values()]
    axes = fig.subplots(len(units), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (unit, group) in zip(axes, units.items(), strict=True):
        _draw_unit(ax, unit, group)
    handles = [Patch(color=ENGINE_COLOUR, label="hookwire")]
    if any(bar.baseline for bar in bars):
        handles.append(Patch(color=BASELINE_COLOUR, label="baseline"))
    if any(bar.failed for bar in bars):
        handles.append(
            Patch(facecolor="none", edgecolor=FAILED_COLOUR, hatch="///", label="failed")
        )
    fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize=11)


def _draw_unit(ax: Any, unit: str, group: list[Bar]) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    values = [bar.value for bar in group if bar.value is not None and bar.value > 0]
    top = max(values, default=1.0)
    # One unit can still span orders of magnitude (SSE fan-out next to webhooks, both
    # deliveries/s): a log axis then, or the small bars vanish.
    log = len(values) > 1 and top / min(values) > SPREAD_FOR_LOG
    if log:
        ax.set_xscale("log")
        floor = 10 ** math.floor(math.log10(min(values)) - 0.3)
        ax.set_xlim(floor, top * 4)
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        floor = 0.0
        ax.set_xlim(0, top * 1.22)  # room right of the longest bar for its value
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: si(x)))
    *positions, bottom = _rows(group)
    if len(_scenario_runs(group)) > 1:
        _draw_headings(ax, group, positions)
    for y, bar in zip(positions, group, strict=True):
        value = bar.value if bar.value is not None and bar.value > floor else None
        if bar.failed:
            end = value if value is not None else (floor * 3 if log else 0.12 * top)
            ax.barh(
                y,
                end - floor,
                left=floor,
                height=0.6,
                facecolor="none",
                edgecolor=FAILED_COLOUR,
                hatch="///",
            )
            text = "failed" if value is None else f"{si(value)} (failed)"
            ax.text(end, y, f"  {text}", va="center", color=FAILED_COLOUR, fontsize=11)
            continue
        end = value if value is not None else floor
        colour = BASELINE_COLOUR if bar.baseline else ENGINE_COLOUR
        ax.barh(y, end - floor, left=floor, height=0.6, color=colour)
        text = si(bar.value or 0.0)
        ax.text(end, y, f"  {text}", va="center", fontsize=11, fontweight="bold")
    if not values:
        ax.set_xticks([])  # only failed bars: the axis would measure nothing
    ax.set_yticks(positions, [_wrap(bar.label, LABEL_CHARS) for bar in group], fontsize=10)
    ax.set_ylim(bottom - 0.5, -0.5)  # first bar on top
    scale = " (log)" if log else ""
    ax.set_title(f"Throughput: {unit}{scale}", loc="left", fontsize=12, fontweight="bold")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def _scenario_runs(group: list[Bar]) -> list[int]:
    """Indexes in ``group`` where a scenario's bars begin (a scenario's bars are adjacent)."""
    return [i for i, bar in enumerate(group) if i == 0 or bar.scenario != group[i - 1].scenario]


def _rows(group: list[Bar]) -> list[float]:
    """Each bar's y position, then the row past the last one.

    Where several scenarios share a panel, each one's bars are preceded by a heading row, so
    that they read as groups rather than as one list.
    """
    runs = _scenario_runs(group)
    starts = set(runs) if len(runs) > 1 else set()
    rows, y = [], 0.0
    for i in range(len(group)):
        if i in starts:
            y += HEADING_ROWS
        rows.append(y)
        y += 1.0
    return [*rows, y]


def _draw_headings(ax: Any, group: list[Bar], positions: list[float]) -> None:
    """Each scenario's name, small and grey, over a thin rule above its first bar."""
    for i in _scenario_runs(group):
        y = positions[i] - 0.5 - HEADING_ROWS / 2
        ax.axhline(y, color=HEADING_COLOUR, linewidth=0.6, alpha=0.5, zorder=0)
        ax.text(
            -0.01,
            y,
            group[i].scenario,
            transform=ax.get_yaxis_transform(),
            ha="right",
            va="center",
            color=HEADING_COLOUR,
            fontsize=8.5,
            fontstyle="italic",
        )


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _draw_latency(ax: Any, lines: list[LatencyLine]) -> None:
    seen: dict[str, set[str]] = {}
    for line in lines:
        seen.setdefault(line.label, set()).add(line.scenario)
    x = range(len(PERCENTILES))
    for line in lines:
        label = line.label
        if len(seen[label]) > 1:  # two scenarios measured under one name: say whose is whose
            label = f"{line.scenario}: {label}"
        p99 = line.values[2]
        if not math.isnan(p99):
            label += f"  (p99\u00a0{p99:.3g}\u00a0ms)"  # one unit when wrapped
        if len(lines) > CROWDED_LEGEND:
            label = _wrap(label, LEGEND_CHARS)
        ax.plot(x, line.values, marker="o", linewidth=2, label=label)
    ax.set_xticks(list(x), [name for name, _ in PERCENTILES], fontsize=11)
    ax.set_yscale("log")
    _plain_log_ticks(ax.yaxis)
    ax.set_ylabel("ms (log)", fontsize=11)
    ax.set_title("Latency percentiles", loc="left", fontsize=12, fontweight="bold")
    ax.grid(which="major", alpha=0.3)
    ax.grid(which="minor", axis="y", alpha=0.1)
    if len(lines) <= CROWDED_LEGEND:
        ax.legend(loc="upper left", fontsize=10)  # lines rise to the right: that corner is free
    else:
        # Below the axes, not beside them: beside, a long legend squeezes the plot to a strip.
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08),
            ncols=2,
            fontsize=8.5,
            frameon=False,
            columnspacing=1.2,
            handlelength=1.5,
        )
    ax.spines[["top", "right"]].set_visible(False)


def _draw_sweep(ax: Any, sweep: Sweep) -> None:
    from matplotlib.ticker import FuncFormatter

    rates = [p.rate for p in sweep.points]
    p99s = [p.p99_ms for p in sweep.points]
    ax.plot(rates, p99s, color="#888888", linewidth=1, zorder=1)
    for ok, colour, marker, name in (
        (True, PASS_COLOUR, "o", "pass"),
        (False, FAILED_COLOUR, "X", "fail"),
    ):
        chosen = [p for p in sweep.points if p.ok is ok]
        if chosen:
            ax.scatter(
                [p.rate for p in chosen],
                [p.p99_ms for p in chosen],
                color=colour,
                marker=marker,
                s=70,
                zorder=3,
                label=name,
            )
    if sweep.bound_ms is not None and sweep.bound_ms > 0:
        ax.axhline(
            sweep.bound_ms,
            color=FAILED_COLOUR,
            linestyle="--",
            linewidth=1.2,
            label=f"bound {sweep.bound_ms:g} ms",
        )
    if sweep.best_rate is not None:
        ax.axvline(sweep.best_rate, color=PASS_COLOUR, linewidth=1.2)
        # Right of the line, unless the line is near the right edge; on a white ground so
        # that grid lines and the curve do not run through it.
        near_right = sweep.best_rate > rates[0] + 0.7 * (rates[-1] - rates[0])
        ax.annotate(
            f"best {si(sweep.best_rate)}/s",
            xy=(sweep.best_rate, 0.98),
            xycoords=("data", "axes fraction"),
            xytext=(-5 if near_right else 5, 0),
            textcoords="offset points",
            ha="right" if near_right else "left",
            va="top",
            color=PASS_COLOUR,
            fontsize=11,
            fontweight="bold",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5},
            zorder=4,
        )
    high = max([*p99s, sweep.bound_ms or 0.0])
    if high / min(p99s) > SPREAD_FOR_LOG:
        ax.set_yscale("log")
        _plain_log_ticks(ax.yaxis)
        ax.set_ylabel("p99 ms (log)", fontsize=11)
    else:
        ax.set_ylim(0, high * 1.15)
        ax.set_ylabel("p99 ms", fontsize=11)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: si(x)))
    ax.set_xlabel("offered rate /s", fontsize=11)
    ax.set_title(f"Sweep: {sweep.title}", loc="left", fontsize=12, fontweight="bold")
    ax.grid(alpha=0.3)
    # "best" weighs the points, the lines and the best rate's label: a fixed corner would
    # hide one of them in some run (the upper left hid the label of an early best rate).
    ax.legend(loc="best", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)


def _plain_log_ticks(axis: Any) -> None:
    """Log ticks at 1, 2, 5, 10, 20... written plainly rather than as 10^0, 10^1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
