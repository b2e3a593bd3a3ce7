"""When the SQLite journal's writer starts a commit: group commit by time, as a pure rule.

One fsync costs the writer thread ~65 µs of CPU (52 µs of it system time), so a journal that
commits whenever anything is queued pays for several commits per published event: the
ingest append, then the dispatcher's attempts and hook events, each at its own moment. The
writer therefore waits a little before a commit, so that whatever arrives meanwhile shares
it. The rule (``commit_start``), for the first piece of work waiting, which arrived at
``a``, when the previous commit ended at ``e``, with ``[journal] commit_interval`` ``i``::

    start = max(e, a, min(e, a) + i)

| the first piece waiting arrived       | the commit starts                                     |
| ------------------------------------- | ----------------------------------------------------- |
| while the previous commit ran (a < e) | ``i`` after it arrived, or as that commit ends if later |
| soon after it (e <= a < e + i)        | ``i`` after the previous commit ended                 |
| later (a >= e + i)                    | at once: the writer was idle, nothing is to be gathered |

Whatever arrives before the start joins the commit. Hence:

- no piece waits more than ``i`` for its commit to start, unless the commit before it is still
  running then (at most one runs at a time): with commits shorter than ``i`` (~0.1 ms here),
  an acknowledged append waits at most ``i`` plus its own commit;
- consecutive commits start at least ``i`` apart, so the writer commits at most ``1 / i``
  times a second however many callers there are;
- work that comes alone, after a quiet spell, is committed at once: the interval costs
  latency only when there is something to share the commit with;
- ``i = 0`` commits as soon as anything waits (the writer's behaviour before the interval).

Times are ``time.monotonic()`` seconds, read in the thread that queued the work.
"""

from __future__ import annotations


def commit_start(first_arrival: float, previous_end: float, interval: float) -> float:
    """When the commit of the work waiting (the first piece queued at ``first_arrival``)
    starts, the previous commit having ended at ``previous_end``."""
    return max(previous_end, first_arrival, min(previous_end, first_arrival) + interval)
