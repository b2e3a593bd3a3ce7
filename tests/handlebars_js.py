"""handlebars.js itself (pinned in tests/js/package.json), rendering templates in batches through
tests/js/handlebars_render.mjs: the oracle our Handlebars engine must match byte for byte
(issue 19), not our reading of its documentation.

``render_with_handlebars_js(cases)`` renders every (template, context) pair in one node run and
answers, in order, ``(True, output)`` or ``(False, handlebars' error message)``. Templates are
compiled with ``strict: false`` and only the built-in helpers; ``options`` adds compile
options (``{"noEscape": True}``...) to every case of the batch. ``patched`` renders with
handlebars.js's upstream fix #2167 applied (4.7.10 adds a block's leading ``{{{a}}}{{{b}}}``
as numbers when both are numbers or booleans): what explains a difference from our engine.

Without node, npm or the installed modules the tests marked ``requires_handlebars_js`` skip,
naming the Debian packages; under CI (``CI`` set, as .ci/run has it) they run and fail instead,
since .ci/run installs all three and `make js` the modules.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from tests.node_packages import JS, missing, requires

SCRIPT = JS / "handlebars_render.mjs"

TIMEOUT = 60.0
"""Seconds for one batch: node starts in about 0.1 s and renders thousands of small cases in
well under a second; a minute leaves room for a busy CI machine without hanging the run."""

MISSING = missing("handlebars")

requires_handlebars_js = requires("handlebars")
"""Skip where handlebars cannot run, except under CI, where it must."""


def render_with_handlebars_js(
    cases: Sequence[tuple[str, object]],
    *,
    options: Mapping[str, object] | None = None,
    patched: bool = False,
) -> list[tuple[bool, str]]:
    """Render each (template, context) with handlebars.js, all in one node run: ``(True,
    output)`` for a render, ``(False, message)`` for a compile or render error."""
    if MISSING is not None:
        raise RuntimeError(MISSING)
    if not cases:
        return []
    node = shutil.which("node")
    assert node is not None
    lines = []
    for template, context in cases:
        case: dict[str, object] = {"template": template, "context": context}
        if options:
            case["options"] = dict(options)
        if patched:
            case["patched"] = True
        # allow_nan=False: NaN and Infinity are not JSON, and node would refuse the line.
        lines.append(json.dumps(case, allow_nan=False))
    done = subprocess.run(
        [node, str(SCRIPT)],
        input="\n".join(lines).encode() + b"\n",
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    stderr = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise AssertionError(f"handlebars_render.mjs exited {done.returncode}: {stderr}")
    # Split on "\n" alone: outputs may hold U+2028 or U+0085, which JSON leaves unescaped
    # and str.splitlines would cut at.
    answers = done.stdout.decode().split("\n")[:-1]
    if len(answers) != len(cases):
        raise AssertionError(
            f"handlebars_render.mjs answered {len(answers)} lines for {len(cases)} cases: {stderr}"
        )
    results = []
    for answer in answers:
        result = json.loads(answer)
        results.append((True, result["output"]) if result["ok"] else (False, result["error"]))
    return results
