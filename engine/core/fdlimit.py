"""The process's open-file limit, and the share of it outbound connections may take."""

from __future__ import annotations

import resource

CEILING = 1 << 20
"""The most files asked for when the hard limit is unlimited."""


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (as nginx and Go's runtime do); returns
    the soft limit now in effect. A system that refuses keeps the limit it had."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CEILING if hard == resource.RLIM_INFINITY else min(hard, CEILING)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft
        return wanted
    return CEILING if soft == resource.RLIM_INFINITY else soft


def open_file_limit() -> int:
    """The soft open-file limit: the most descriptors this process may hold."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return CEILING if soft == resource.RLIM_INFINITY else soft


def connection_share(files: int) -> int:
    """Outbound connections a process with ``files`` descriptors may keep open: three
    quarters of them, leaving at least 64 for its listeners, clients, journal and pipes."""
    return max(1, files - max(64, files // 4))
