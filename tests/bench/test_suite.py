"""The suite runner: choosing scenarios, isolating failures, the table, the result files."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness.daemon import Daemon, EngineFailed
from bench.harness.suite import Findings, Scenario, Suite, UnknownScenario, select
from engine.cli import commands as cli

RUNNER = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def _scenario(name: str, body: object = None) -> Scenario:
    def run(found: Findings) -> None:
        if isinstance(body, BaseException):
            raise body
        found.headline("things/s", 1234.0, "/s", baseline="naive", baseline_value=617.0)

    return Scenario(name, f"the {name} scenario", run)


SCENARIOS = [_scenario("a"), _scenario("b"), _scenario("c")]


def test_select_keeps_the_suite_order_and_takes_all_by_default() -> None:
    assert [s.name for s in select(SCENARIOS, ["c", "a"])] == ["a", "c"]
    assert [s.name for s in select(SCENARIOS, [])] == ["a", "b", "c"]


def test_an_unknown_scenario_is_named_with_the_ones_there_are() -> None:
    with pytest.raises(UnknownScenario) as caught:
        select(SCENARIOS, ["a", "nope", "zzz"])
    assert str(caught.value) == "unknown scenarios 'nope', 'zzz': expected one of a, b, c"


def test_a_failing_scenario_stops_only_itself_and_is_reported_with_its_reason() -> None:
    suite = Suite(params={})
    scenarios = [
        _scenario("engine", EngineFailed("hookwire exited with 1 while starting:\nboom: bad")),
        _scenario("harness", OSError(98, "Address already in use")),
        _scenario("fine"),
    ]
    outcomes = suite.run(scenarios)
    assert [o.status for o in outcomes] == ["failed", "error", "ok"]
    assert suite.failed
    table = suite.table()
    assert "engine: FAILED: hookwire exited with 1 while starting:" in table
    assert "    | boom: bad" in table  # the daemon's stderr, shown under the failure
    assert "harness: ERROR: the harness could not run it: OSError" in table
    assert "fine" in table and "2.00x naive (617)" in table


def test_the_document_holds_every_scenario_with_its_findings() -> None:
    suite = Suite(params={"quick": True}, machine_busy=0.05)
    suite.run([_scenario("a"), _scenario("bad", EngineFailed("lost 3 deliveries"))])
    document = json.loads(json.dumps(suite.document()))  # plain JSON all the way down
    assert document["suite"] == "hookwire-bench"
    assert document["machine_busy_before_pct"] == 5.0
    assert document["machine"]["cpus"] >= 1
    first, second = document["scenarios"]
    assert first["status"] == "ok" and first["failure"] is None
    assert first["headlines"] == [
        {
            "label": "things/s",
            "value": 1234.0,
            "unit": "/s",
            "baseline": "naive",
            "baseline_value": 617.0,
            "ratio": 2.0,
            "caveat": None,
        }
    ]
    assert second["status"] == "failed" and second["failure"] == "lost 3 deliveries"


def test_a_saturated_sink_makes_the_number_a_floor_and_the_table_says_so() -> None:
    found = Findings("delivery-1")
    found.results["throughput.receiver_cpu_pct"] = 97.0
    caveat = found.sink_caveat("throughput")
    assert caveat is not None and caveat.startswith("floor: the sink used 97%")
    found.results["throughput.receiver_cpu_pct"] = 40.0
    assert found.sink_caveat("throughput") is None

    def saturated(found: Findings) -> None:
        found.headline("deliveries/s", 9000.0, "/s", caveat="floor: the sink used 97% of a core")

    suite = Suite(params={})
    suite.run([Scenario("delivery-1", "t", saturated)])
    table = suite.table()
    assert "9,000 /s (floor)" in table
    assert "delivery-1: deliveries/s: floor: the sink used 97% of a core" in table


def test_a_daemon_that_cannot_start_fails_with_its_own_error_output(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "journal.db"
    daemon = Daemon(journal={"backend": "sqlite", "path": str(missing)})
    with pytest.raises(EngineFailed) as caught, daemon:
        pass
    message = str(caught.value)
    assert message.startswith("hookwire exited with 1 while starting:")
    assert "no-such-folder" in message  # the engine's own words, from its stderr


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_an_unknown_scenario_name_is_refused_before_anything_runs(tmp_path: Path) -> None:
    done = _run("delivery-1", "deliveries", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown scenario 'deliveries': expected one of delivery-1, delivery-100" in (
        done.stderr
    )
    assert not (tmp_path / "bench").exists()


def test_a_port_in_use_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("--port", str(port), "templates", cwd=tmp_path)
    assert done.returncode == 2
    assert f"--port {port}: 127.0.0.1:{port} cannot be listened on (Address already in use)" in (
        done.stderr
    )


def test_hookwire_bench_hands_over_to_the_runner(capfd: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--list"]) == 0
    listed = capfd.readouterr().out.split()
    for name in ("delivery-1", "delivery-1000", "baselines", "sweep", "crash"):
        assert name in listed


@pytest.mark.slow
def test_a_quick_run_writes_the_table_the_json_and_the_chart(tmp_path: Path) -> None:
    """The smoke scenario: two real scenarios, a few seconds each, every output checked."""
    results = tmp_path / "results"
    done = _run(
        "--quick",
        "--sink",
        "python",
        "--results",
        str(results),
        "delivery-1",
        "latency",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[1/2] delivery-1 ok in" in done.stderr
    assert "[2/2] latency ok in" in done.stderr
    table = done.stdout
    assert "== hookwire bench" in table
    assert "deliveries/s, 1 destination" in table
    assert "p99 publish-to-receipt, SQLite journal, 1,000 events/s" in table
    assert "p99 publish-to-receipt, memory journal, 1,000 events/s" in table
    [json_path] = results.glob("bench-*.json")
    [png_path] = results.glob("bench-*.png")
    assert f"results: {json_path}" in table and f"chart:   {png_path}" in table
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads(json_path.read_text())
    assert document["params"]["quick"] is True
    delivery, latency = document["scenarios"]
    assert delivery["status"] == latency["status"] == "ok"
    assert delivery["results"]["throughput.lost"] == 0
    assert delivery["results"]["throughput.duplicates"] == 0
    assert delivery["headlines"][0]["value"] > 0
    assert [line["label"] for line in latency["latency"]] == [
        "SQLite journal, 1,000 events/s",
        "memory journal, 1,000 events/s",
    ]
    for line in latency["latency"]:
        assert line["rate"] == 1000.0 and line["count"] > 500
        assert 0 < line["p50_ms"] <= line["p90_ms"] <= line["p99_ms"] <= line["max_ms"]
