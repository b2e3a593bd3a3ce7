"""The benchmarks' shared machinery: daemons, sinks, load generators, phases, report, chart.

``daemon`` (start/stop the engine or any server), ``receiver`` and ``nginx_sink`` (webhook
sinks), ``httpload``, ``pacing`` and ``sse_client`` (load generators), ``delivery`` (the
delivery phases), ``latency`` and ``sweep`` (statistics), ``report``, ``suite``,
``scenario`` (how a scenario registers and what it gets to run), ``chart``.
"""
