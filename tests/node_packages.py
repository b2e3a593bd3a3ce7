"""The npm packages the tests run under node (pinned in tests/js/package.json): whether
they can run here, and the skip marker for tests that need one.

Without node, npm or the installed modules such tests skip, naming the Debian packages;
under CI (``CI`` set, as .ci/run has it) they run and fail instead, since .ci/run installs
node and npm and `make js` the modules.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

JS = Path(__file__).resolve().parent / "js"

IN_CI = bool(os.environ.get("CI"))


def missing(package: str) -> str | None:
    """Why ``package`` cannot run here under node, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return (
            f"{package} needs node and npm: `apt-get install nodejs npm` (Debian), "
            "then `make test` installs tests/js/node_modules"
        )
    if not (JS / "node_modules" / package).is_dir():
        return "tests/js/node_modules is not installed: `make test` or `npm ci --prefix tests/js`"
    return None


def requires(package: str) -> pytest.MarkDecorator:
    """Skip where ``package`` cannot run, except under CI, where it must."""
    why = missing(package)
    return pytest.mark.skipif(why is not None and not IN_CI, reason=why or f"{package} is here")
