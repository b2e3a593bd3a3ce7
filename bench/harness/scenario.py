"""How a suite scenario registers itself, and what it gets to run with.

A scenario is a function of ``(bench, found)`` in a module of bench/scenarios/, decorated
with ``@scenario(name, title, order=...)``. The decorator turns it into a ``Registered``;
bench/scenarios/__init__.py lists the folder, imports each module and collects them, so the
runner names no scenario. ``order`` places it in the suite (the table, the JSON, ``--list``).

``Bench`` is what the scenarios of one suite run share: the ``Settings`` (``--quick``,
``--sink``, ``--seed``), the throughput sink, the delivery script's defaults, and
delivery-1's rate (the baselines compare with it rather than measuring it again).

Every scenario starts its own daemons (bench/harness/daemon.py), sinks and load-generator
processes. Daemons use the shipped journal (SQLite, ``synchronous = full``) unless the
scenario compares journals. ``Settings.quick`` shrinks every phase to a second or so: the
smoke run of the test suite uses it, and its numbers are only indicative.

Sinks: latency phases need the event's time stamp, which travels in the request body, and
the isolation phase needs a destination that never answers: both use the Python receiver
(bench/harness/receiver.py). Throughput phases use nginx when it is installed
(bench/harness/nginx_sink.py), which costs far less CPU per request on the same two cores,
unless ``Settings.sink`` says otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from bench.harness.daemon import raise_fd_limit
from bench.harness.delivery.options import make_parser as delivery_parser
from bench.harness.nginx_sink import NginxSink, nginx_path
from bench.harness.receiver import Receiver, ReceiverStats
from bench.harness.report import Report
from bench.harness.suite import Findings, Scenario

SINKS = ("auto", "python", "nginx")

FD_LIMIT = 16384
"""Open files the suite asks for: 2,000 SSE streams, 1,000 sink ports and their peers."""


class Sink(Protocol):
    """What the delivery phases need of a webhook sink (``Receiver`` or ``NginxSink``)."""

    ports: list[int]
    silent_ports: list[int]

    def reset(self) -> None: ...
    def count(self) -> tuple[int, int, int]: ...
    def stats(self) -> ReceiverStats: ...
    def ids(self) -> set[bytes]: ...


@dataclass(frozen=True, slots=True)
class Settings:
    quick: bool = False
    sink: str = "auto"  # one of SINKS
    seed: int | None = None  # the crash moments (random when None)

    def pick(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full


def nginx_installed() -> bool:
    return nginx_path() is not None


class Bench:
    """What the scenarios of one suite run share: settings, sinks, delivery-1's rate."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.one_destination: float | None = None  # delivery-1's deliveries/s, once measured
        raise_fd_limit(FD_LIMIT)

    @contextmanager
    def sink(self, ports: int, found: Report) -> Iterator[Sink]:
        """A throughput sink: nginx when chosen (or installed, with ``auto``), else Python."""
        use_nginx = self.settings.sink == "nginx" or (
            self.settings.sink == "auto" and nginx_installed()
        )
        if use_nginx:
            found.params["sink"] = "nginx"
            with NginxSink(ports) as nginx:
                yield nginx
            return
        found.params["sink"] = "python"
        with Receiver(ports) as receiver:
            yield receiver

    def delivery_args(self, **values: Any) -> argparse.Namespace:
        """bench/scenarios/delivery.py's options, shortened by ``--quick``, with ``values``."""
        settings = self.settings
        defaults: dict[str, Any] = {
            "duration": settings.pick(4.0, 1.0),
            "warmup": settings.pick(0.5, 0.2),
            "journal": "sqlite",
            "baseline_duration": settings.pick(3.0, 1.0),
        }
        return options(delivery_parser(), **(defaults | values))


Measure = Callable[[Bench, Findings], None]


@dataclass(frozen=True, slots=True)
class Registered:
    """A suite scenario as its module declares it: found by bench/scenarios/__init__.py."""

    name: str
    title: str
    order: int  # its place in the suite: lower runs first
    measure: Measure

    def bind(self, bench: Bench) -> Scenario:
        return Scenario(self.name, self.title, partial(self.measure, bench))


def scenario(name: str, title: str, *, order: int) -> Callable[[Measure], Registered]:
    """Register the decorated ``measure(bench, found)`` as the suite scenario ``name``."""

    def register(measure: Measure) -> Registered:
        return Registered(name, title, order, measure)

    return register


def bind(registered: Iterable[Registered], bench: Bench) -> list[Scenario]:
    """The suite's scenarios, in order, each run with ``bench``."""
    return [entry.bind(bench) for entry in sorted(registered, key=lambda entry: entry.order)]


def options(parser: argparse.ArgumentParser, **values: Any) -> argparse.Namespace:
    """A script's own defaults, with ``values`` instead (names checked: a typo is a bug)."""
    args = parser.parse_args([])
    for name, value in values.items():
        if not hasattr(args, name):
            raise AttributeError(f"{parser.prog} has no option {name!r}")
        setattr(args, name, value)
    return args


def merge(found: Report, part: Report, prefix: str, title: str) -> None:
    """Copy a sub-measurement's report into ``found`` under ``prefix``."""
    found.section(title)
    found.rows.extend(part.rows)
    found.results.update({f"{prefix}.{key}": value for key, value in part.results.items()})
    for target in part.targets:
        found.target(
            f"{prefix}: {target.label}", target.value, target.op, target.threshold, target.unit
        )
    found.notes.extend(f"{prefix}: {note}" for note in part.notes)
    if part.failure:
        found.fail(f"{prefix}: {part.failure}")


def versus(
    found: Findings, headline: str, ours: tuple[str, str], reference: tuple[str, str]
) -> None:
    """Two deliveries/s of ``found.results`` (label, key): two bars and a headline ratio."""
    (label, key), (reference_label, reference_key) = ours, reference
    value = float(found.results.get(key, 0.0))
    reference_value = float(found.results.get(reference_key, 0.0))
    found.throughput(reference_label, reference_value, "deliveries/s")
    found.throughput(label, value, "deliveries/s")
    found.headline(
        headline,
        value,
        "deliveries/s",
        baseline=reference_label,
        baseline_value=reference_value,
    )
