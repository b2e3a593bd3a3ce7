"""When the SQLite journal's writer starts a commit: group commit by time, as a pure rule.

One fsync costs the writer thread ~65 µs of CPU (52 µs of it system time), so a journal that
commits whenever anything is queued pays for several commits per published event: the
ingest append, then the dispatcher's attempts and hook events, each at its own moment. The
writer therefore waits a little before a commit, so that whatever arrives meanwhile shares
it. The rule (``commit_start``), for the first piece of work waiting, which arrived at ``a``,
when the previous commit started at ``s`` and ended at ``e``, with ``[journal]
commit_interval`` ``i``::

    start = max(a, e, s + i)

| the first piece waiting arrived             | the commit starts                          |
| ------------------------------------------- | ------------------------------------------ |
| within ``i`` of the previous commit's start | ``i`` after that start, or as it ends      |
| later                                       | at once (or as the previous commit ends)   |

Whatever arrives before the start joins the commit. Hence:

- at most one commit runs at a time, and consecutive commits start at least ``i`` apart, so
  the writer commits at most ``1 / i`` times a second however many callers there are;
- no piece waits more than ``i`` for its commit to start, unless the commit before it is still
  running then (a piece came after the previous commit started, else it would be in it);
- under load, when a commit takes longer than ``i`` (big batches, a slow disk), the next one
  starts as it ends: the interval adds no latency when commits are already that far apart;
- work that comes alone, after a quiet spell, is committed at once;
- ``i = 0`` commits as soon as anything waits (the writer's behaviour before the interval).

The interval counts from the previous commit's start, not its end: counted from the end,
a steady stream (a gateway at 20,000 events/s) waited the whole interval after every commit,
and its ack p50 went from 1.6 ms to 6.0 ms.

Times are ``time.monotonic()`` seconds, read in the thread that queued the work.
"""

from __future__ import annotations


def commit_start(
    first_arrival: float, previous_start: float, previous_end: float, interval: float
) -> float:
    """When the commit of the work waiting (the first piece queued at ``first_arrival``)
    starts, the previous commit having run from ``previous_start`` to ``previous_end``."""
    return max(first_arrival, previous_end, previous_start + interval)
