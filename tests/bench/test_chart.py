"""The suite's PNG chart: drawn from a full document, skipped with a reason when it cannot be."""

from __future__ import annotations

import copy
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.harness.chart import (
    DPI,
    FIGSIZE,
    MISSING_MATPLOTLIB,
    NOTHING_TO_PLOT,
    _draw,
    chart_data,
    si,
    write_chart,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _latency(label: str, rate: float, p50: float, p99: float, top: float) -> dict[str, Any]:
    return {
        "label": label,
        "rate": rate,
        "count": int(rate * 4),
        "p50_ms": p50,
        "p90_ms": p50 * 1.7,
        "p99_ms": p99,
        "p999_ms": p99 * 2.2,
        "max_ms": top,
    }


def _scenario(name: str, title: str, **parts: Any) -> dict[str, Any]:
    scenario: dict[str, Any] = {
        "name": name,
        "title": title,
        "status": "ok",
        "seconds": 12.3,
        "failure": None,
        "throughput": [],
        "latency": [],
        "sweep": None,
        "headlines": [],
        "rows": [],
        "results": {},
        "targets": [],
        "notes": [],
    }
    scenario.update(parts)
    return scenario


def _bar(label: str, value: float, unit: str, kind: str = "engine") -> dict[str, Any]:
    return {"label": label, "value": value, "unit": unit, "kind": kind}


SAMPLE: dict[str, Any] = {
    "suite": "hookwire-bench",
    "started": "2026-11-29T03:40:00.123456+00:00",
    "seconds": 250.3,
    "machine": {"cpus": 2, "python": "3.11.7", "platform": "Linux-x86_64", "commit": "abc1234"},
    "machine_busy_before_pct": 1.0,
    "params": {"quick": False, "scenarios": ["publish", "delivery-1", "delivery-100"]},
    "scenarios": [
        _scenario(
            "publish",
            "REST publishes/s",
            throughput=[
                _bar("hookwire, 32 connections", 12480.0, "requests/s"),
                _bar("trio + httptools baseline", 21900.0, "requests/s", "baseline"),
                _bar("asyncio.Protocol baseline", 31250.0, "requests/s", "baseline"),
            ],
            latency=[_latency("publish at 5,000 requests/s", 5000.0, 0.9, 3.1, 14.0)],
        ),
        _scenario(
            "delivery-1",
            "Webhook deliveries/s to 1 destination",
            throughput=[
                _bar("hookwire, 1 destination", 13100.0, "deliveries/s"),
                _bar("httpx on trio, same sink", 4200.0, "deliveries/s", "baseline"),
            ],
            latency=[_latency("5,000 events/s", 5000.0, 1.2, 3.7, 20.1)],
            sweep={
                "bound_ms": 10.0,
                "best_rate": 7000.0,
                "points": [
                    {"rate": 1000.0, "p99_ms": 2.1, "ok": True},
                    {"rate": 3000.0, "p99_ms": 3.0, "ok": True},
                    {"rate": 5000.0, "p99_ms": 3.7, "ok": True},
                    {"rate": 7000.0, "p99_ms": 8.8, "ok": True},
                    {"rate": 9000.0, "p99_ms": 41.0, "ok": False},
                    {"rate": 11000.0, "p99_ms": 380.0, "ok": False},
                ],
            },
        ),
        _scenario(
            "sse-fanout",
            "SSE deliveries/s to 2,000 streams",
            throughput=[_bar("hookwire, 2,000 streams", 1_840_000.0, "deliveries/s")],
        ),
        _scenario(
            "delivery-100",
            "Webhook deliveries/s to 100 destinations",
            status="failed",
            failure="the engine died (exit -9)\nlast lines of its log: ...",
            throughput=[_bar("hookwire, 100 destinations", 9800.0, "deliveries/s")],
        ),
        _scenario(
            "crash",
            "Recovery after kill -9",
            status="error",
            failure="the harness could not run it: OSError: [Errno 24] Too many open files",
        ),
    ],
}


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which PNG requires to come first."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_sample_document_draws_a_png(tmp_path: Path) -> None:
    path = tmp_path / "results" / "bench-20261129T034000Z.png"
    document = copy.deepcopy(SAMPLE)
    assert write_chart(document, path) is None
    assert document == SAMPLE
    width, height = _png_size(path.read_bytes())
    assert (width, height) == (1600, 1000)


def test_chart_data_reads_every_series() -> None:
    data = chart_data(SAMPLE)
    assert data.title.startswith("hookwire-bench  ·  2026-11-29 03:40 UTC  ·  commit abc1234")
    assert "2 CPUs" in data.title
    assert [b.unit for b in data.bars].count("deliveries/s") == 4
    assert [b.baseline for b in data.bars].count(True) == 3
    assert [b.label for b in data.bars if b.failed] == ["hookwire, 100 destinations"]
    assert [line.values[2] for line in data.latency] == [3.1, 3.7]
    (sweep,) = data.sweeps
    assert [p.ok for p in sweep.points] == [True] * 4 + [False] * 2
    assert (sweep.bound_ms, sweep.best_rate) == (10.0, 7000.0)
    assert data.failed == [
        "delivery-100 (the engine died (exit -9))",
        "crash (the harness could not run it: OSError: [Errno 24] Too many open files)",
    ]


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"suite": "hookwire-bench", "scenarios": []},
        {"scenarios": None, "machine": None, "params": None},
        {"scenarios": [{"name": "x", "status": "error", "throughput": None, "latency": None}]},
        {"scenarios": [_scenario("x", "x", sweep={"bound_ms": 10.0, "points": []})]},
        {"scenarios": ["not a scenario", 3, None]},
    ],
)
def test_nothing_to_plot_writes_nothing(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "chart.png"
    assert write_chart(document, path) == NOTHING_TO_PLOT
    assert not path.exists()


def test_partial_document_is_drawn_as_far_as_it_goes(tmp_path: Path) -> None:
    document = {
        "started": "not a date",
        "machine": {"cpus": None, "commit": None},
        "scenarios": [
            {"name": "a", "throughput": [{"value": 100.0}, {"label": "no value"}, None]},
            {"name": "huge", "throughput": [{"value": 10**400}, {"value": float("inf")}]},
            {"status": "failed", "throughput": [{"label": "partial", "unit": "events/s"}]},
            {"name": "b", "latency": [{"label": "only p50", "p50_ms": 1.0, "p99_ms": None}]},
            {"name": "c", "latency": [{"p50_ms": 0, "max_ms": float("nan")}]},
            {"name": "d", "sweep": {"points": [{"rate": 10.0, "p99_ms": 1.0}, {"rate": 20.0}]}},
            {"name": "e", "sweep": {"bound_ms": "10", "best_rate": True, "points": "none"}},
        ],
    }
    path = tmp_path / "chart.png"
    assert write_chart(document, path) is None
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_without_matplotlib_says_so_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None in sys.modules makes `import matplotlib` raise ImportError, as if not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    path = tmp_path / "chart.png"
    reason = write_chart(copy.deepcopy(SAMPLE), path)
    assert reason == MISSING_MATPLOTLIB
    assert "matplotlib" in reason
    assert not path.exists()


def _crowded() -> dict[str, Any]:
    """SAMPLE with as many latency lines as a full run has, and long labels among them."""
    document = copy.deepcopy(SAMPLE)
    document["scenarios"][0]["latency"] = [
        _latency(f"SQLite journal, {rate:,} events/s, {'a long description ' * i}", rate, 1, 3, 9)
        for i, rate in enumerate((1000, 2500, 5000, 10000))
    ]
    document["scenarios"][1]["latency"] = [
        _latency(f"memory journal, {rate:,} events/s", rate, 0.5, 2, 8) for rate in (1000, 5000)
    ]
    return document


def _drawn(document: dict[str, Any]) -> dict[str, Any]:
    """The figure's axes by their title, after a full layout as ``write_chart`` does it."""
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    _draw(fig, chart_data(document))
    fig.canvas.draw()
    return {ax.get_title(loc="left"): ax for ax in fig.get_axes() if ax.get_visible()}


def test_crowded_latency_legend_goes_below_and_leaves_the_plot_wide() -> None:
    axes = _drawn(_crowded())
    ax = axes["Latency percentiles"]
    plot, column = ax.get_window_extent(), ax.get_figure(root=False).bbox
    legend = ax.get_legend().get_window_extent()
    assert plot.width >= 0.6 * column.width
    assert legend.y1 <= plot.y0  # below the axes (and their tick labels' top)
    assert column.x0 <= legend.x0 and legend.x1 <= column.x1
    assert len(ax.get_legend().get_texts()) == 6


def _real_sweep() -> dict[str, Any]:
    """A full run's shape: seven latency lines, the best rate early, its label top left."""
    document = copy.deepcopy(SAMPLE)
    document["scenarios"][0]["latency"] = [
        _latency(f"{journal} journal, {rate:,} events/s", rate, 1, 3, 9)
        for journal in ("SQLite", "memory")
        for rate in (1000, 2500, 5000)
    ]
    points = [(1000.0, 4.3), (2000.0, 5.4), (2380.0, 7.4), (2590.0, 9.9), (2830.0, 10.4)]
    document["scenarios"][1]["sweep"] = {
        "bound_ms": 10.0,
        "best_rate": 2590.0,
        "points": [{"rate": r, "p99_ms": p} for r, p in [*points, (4000.0, 17.8)]],
    }
    return document


@pytest.mark.parametrize(
    ("document", "best"), [(SAMPLE, "best 7k/s"), (_real_sweep(), "best 2.59k/s")]
)
def test_sweep_legend_covers_neither_the_best_rate_nor_the_points(
    document: dict[str, Any], best: str
) -> None:
    ax = _drawn(document)["Sweep: Webhook deliveries/s to 1 destination"]
    legend = ax.get_legend().get_window_extent()
    (label,) = [text for text in ax.texts if "best" in text.get_text()]
    assert label.get_text().strip() == best
    # Not touching either: a label flush against the legend's frame reads as part of it.
    assert not legend.padded(4).overlaps(label.get_window_extent())
    for collection in ax.collections:
        for x, y in collection.get_offset_transform().transform(collection.get_offsets()):
            assert not legend.contains(x, y)


def test_scenarios_sharing_a_unit_are_headed_groups() -> None:
    axes = _drawn(SAMPLE)
    shared = axes["Throughput: deliveries/s (log)"]
    headings = [(text.get_text(), text.get_position()[1]) for text in shared.texts]
    headings = [
        (name, y) for name, y in headings if name in {"delivery-1", "sse-fanout", "delivery-100"}
    ]
    assert [name for name, _ in headings] == ["delivery-1", "sse-fanout", "delivery-100"]
    bars = [tick.get_text() for tick in shared.get_yticklabels()]
    assert bars == [
        "hookwire, 1 destination",
        "httpx on trio, same sink",
        "hookwire, 2,000 streams",
        "hookwire, 100 destinations",
    ]
    rows = list(shared.get_yticks())
    # Each heading sits above its scenario's first bar, after the previous scenario's last.
    assert headings[0][1] < rows[0]
    assert rows[1] < headings[1][1] < rows[2]
    assert rows[2] < headings[2][1] < rows[3]
    # One scenario alone in its unit needs no heading: the panel's title says it all.
    alone = axes["Throughput: requests/s"]
    assert [text.get_text() for text in alone.texts] == ["  12.5k", "  21.9k", "  31.2k"]
    assert list(alone.get_yticks()) == [0, 1, 2]


@pytest.mark.parametrize(
    ("value", "text"),
    [(13100.0, "13.1k"), (950.0, "950"), (999_999.0, "1M"), (1_840_000.0, "1.84M"), (0.5, "0.5")],
)
def test_si(value: float, text: str) -> None:
    assert si(value) == text
