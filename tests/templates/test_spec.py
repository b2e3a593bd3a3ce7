"""The official Mustache spec's required modules, every test, against compile_template.

The JSON files in ``spec/`` are copied unchanged from the mustache/spec repository (its
commit is in ``spec/COMMIT``, its licence in ``spec/LICENSE``). Lambdas and the optional
``~`` modules are out of scope.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.templates import compile_template

SPEC_DIR = Path(__file__).resolve().parent / "spec"
REQUIRED_MODULES = ("comments", "delimiters", "interpolation", "inverted", "partials", "sections")


def _spec_cases() -> list[Any]:
    cases = []
    for module in REQUIRED_MODULES:
        document = json.loads((SPEC_DIR / f"{module}.json").read_text(encoding="utf-8"))
        for test in document["tests"]:
            cases.append(pytest.param(test, id=f"{module}: {test['name']}"))
    return cases


CASES = _spec_cases()


def test_every_required_module_is_present() -> None:
    assert (SPEC_DIR / "LICENSE").is_file()
    # 136 tests in the required modules of spec v1.4; fewer means a file was cut short.
    assert len(CASES) >= 136


@pytest.mark.parametrize("test", CASES)
def test_spec(test: dict[str, Any]) -> None:
    template = compile_template(test["template"], test.get("partials"))
    assert template.render(test["data"]) == test["expected"], test["desc"]
