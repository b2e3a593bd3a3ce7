"""Differential test: our compiled templates against chevron, on generated templates and data.

chevron (a test-only dependency) is a plain Mustache renderer that passes the spec's required
modules but one test. Hypothesis builds templates from a small grammar (text, newlines and
indentation, ``{{x}}``, ``{{{x}}}``, ``{{&x}}``, ``{{.}}``, dotted names, comments, sections
and inverted sections nested over names, tags alone on their line or not) and JSON-like
contexts (strings, ints, floats, bools, None, nested dicts, lists of dicts or scalars), and
asserts both render the same text.

Where we differ from chevron on purpose, the test normalizes (chevron gets wrapped values)
or does not generate the case:

(a) Values print as Particle's JavaScript renderer prints them, not as Python's ``str()``:
    true/false, null as "", 3.0 as "3", dicts and lists as compact JSON (``orjson.dumps``).
    Normalized: chevron sees ``_JsBool`` for bools, an int for an integral float, and
    ``_JsDict``/``_JsList`` whose ``str()`` is the compact JSON of the original value.
    Non-integral floats are drawn as ``n + k/100``, whose ``repr`` is JavaScript's text too
    (they differ only below 1e-4 and above 1e16, in the exponent form). None already
    prints "" in both.
(b) chevron fails the spec's "Dotted Names - Context Precedence": when the first part of a
    dotted name resolves in an inner scope and the rest does not, chevron tries the outer
    scopes. Not generated: dotted names start only with ``HEADS``, keys that exist only at
    the root of the context (the outermost scope), so there is no outer scope to try.
(c) An empty dict ``{}`` is truthy for us (JavaScript objects are) and falsy for chevron
    (Python's ``bool``). Normalized: ``_JsDict`` is always truthy. 0, "" and [] are falsy in
    both, so they are generated as they are, except as list items (d).
(d) chevron quirks outside the spec, avoided: it skips the whole body for a falsy list item
    (the spec renders it with the item as context), so list items are dicts, non-empty
    strings or non-zero ints; inside an inverted section ``{{.}}`` is the scope below the
    section's pushed ``True``, which is wrong when that is another inverted section's
    ``True``, so ``{{.}}`` is not generated directly inside an inverted section; and a list
    section over ``a`` ends at the first ``{{/a}}``, even an inner ``{{^a}}``'s, so a block
    never reuses an enclosing block's name. chevron resolves names with ``getattr`` too, so
    names are single letters that no Python value has as an attribute.
(e) chevron keeps the spaces after a standalone tag on the last line when no newline ends
    it (``"x\\n{{! c }} "`` gives ``"x\\n "``; the spec's rule, and ours, drop the whole
    line). Avoided: a template that ends in spaces gets a final newline.
(f) chevron strips only spaces, not tabs, before a standalone tag (``"\\t{{#a}}\\n"`` keeps
    the tab). Avoided: templates are generated without tabs (values and comments have them).
"""

from __future__ import annotations

from typing import Any

import chevron
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.templates import compile_template

NAMES = ("a", "b", "c", "d")
"""Keys at every depth of the context."""

HEADS = ("p", "q")
"""Keys only at the root, and the only first parts of dotted names (see (b))."""

TEXT_CHARS = "xyz XYZ 019 .,:;-_/|=!#^&<>\"'"
VALUE_CHARS = "ab Z9 &<>\"'/\t"
MAX_DEPTH = 3


# -- values chevron prints like JavaScript (see (a) and (c)) -------------------------------


class _JsBool:
    """A bool for chevron: prints true/false; chevron's lookup returns it even when false."""

    __slots__ = ("_value",)
    _CHEVRON_return_scope_when_falsy = True

    def __init__(self, value: bool) -> None:
        self._value = value

    def __bool__(self) -> bool:
        return self._value

    def __str__(self) -> str:
        return "true" if self._value else "false"


class _JsDict(dict[str, Any]):
    """A dict for chevron: always truthy, prints as the original's compact JSON."""

    __slots__ = ("_json",)

    def __init__(self, items: dict[str, Any], json: str) -> None:
        super().__init__(items)
        self._json = json

    def __bool__(self) -> bool:
        return True

    def __str__(self) -> str:
        return self._json


class _JsList(list[Any]):
    """A list for chevron: prints as the original's compact JSON, "[]" too."""

    __slots__ = ("_json",)
    _CHEVRON_return_scope_when_falsy = True

    def __init__(self, items: list[Any], json: str) -> None:
        super().__init__(items)
        self._json = json

    def __str__(self) -> str:
        return self._json


def for_chevron(value: Any) -> Any:
    """``value`` as chevron must see it to render what we render (see (a) and (c))."""
    if isinstance(value, bool):
        return _JsBool(value)
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return _JsDict({k: for_chevron(v) for k, v in value.items()}, _json(value))
    if isinstance(value, list):
        return _JsList([for_chevron(v) for v in value], _json(value))
    return value


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# -- contexts ------------------------------------------------------------------------------

floats = st.one_of(
    st.integers(-100, 100).map(float),
    st.builds(lambda n, k: n + k / 100, st.integers(-100, 100), st.integers(1, 99)),
)
scalars = st.one_of(
    st.text(VALUE_CHARS, max_size=5),
    st.integers(-5, 1000),
    floats,
    st.booleans(),
    st.none(),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    dicts = st.dictionaries(st.sampled_from(NAMES), children, max_size=3)
    items = st.one_of(dicts, st.text(VALUE_CHARS, min_size=1, max_size=4), st.integers(1, 99))
    return st.one_of(dicts, st.lists(items, max_size=3))


values = st.recursive(scalars, _containers, max_leaves=8)
contexts = st.fixed_dictionaries({}, optional={name: values for name in NAMES + HEADS})


# -- templates -----------------------------------------------------------------------------

spaces = st.sampled_from(["", " ", "  "])  # no tabs: see (f)
dotted = st.builds(
    lambda head, rest: ".".join((head, *rest)),
    st.sampled_from(HEADS),
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=2),
)


def _names(exclude: frozenset[str] = frozenset()) -> st.SearchStrategy[str]:
    simple = st.sampled_from([n for n in NAMES + HEADS if n not in exclude])
    # Three simple names to one dotted: simple names are the ones that lists and nested
    # dicts have, so they make sections iterate and push scopes more often.
    return st.one_of(simple, simple, simple, dotted.filter(lambda name: name not in exclude))


@st.composite
def _tag(draw: st.DrawFn, sigil: str, name: str) -> str:
    """``{{#name}}`` or ``{{ # name }}``-like spacing, as the spec allows."""
    pad = draw(spaces)
    if sigil == "{":
        return f"{{{{{{{pad}{name}{pad}}}}}}}"
    return f"{{{{{sigil}{pad}{name}{pad}}}}}"


@st.composite
def _on_own_line(draw: st.DrawFn, tag: str) -> str:
    """Sometimes put a tag alone on its line (a standalone tag, which removes the line)."""
    if not draw(st.booleans()):
        return tag
    before, after = draw(spaces), draw(spaces)
    return f"\n{before}{tag}{after}\n"


@st.composite
def _element(draw: st.DrawFn, depth: int, open_blocks: frozenset[str], inverted: bool) -> str:
    kinds = ["text", "newline", "spaces", "variable", "comment"]
    if not inverted:
        kinds.append("dot")
    if depth < MAX_DEPTH:
        kinds += ["section", "inverted"]
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return draw(st.text(TEXT_CHARS, min_size=1, max_size=6))
    if kind == "newline":
        return "\n"
    if kind == "spaces":
        return draw(spaces.filter(bool))
    if kind == "variable":
        return draw(_tag(draw(st.sampled_from(["", "{", "&"])), draw(_names())))
    if kind == "dot":
        return draw(_tag(draw(st.sampled_from(["", "{", "&"])), "."))
    if kind == "comment":
        text = draw(st.text(TEXT_CHARS + "\n\t", max_size=8))
        return draw(_on_own_line(f"{{{{!{text}}}}}"))
    name = draw(_names(open_blocks))
    sigil = "#" if kind == "section" else "^"
    body = draw(_body(depth + 1, open_blocks | {name}, kind == "inverted"))
    opening = draw(_on_own_line(draw(_tag(sigil, name))))
    closing = draw(_on_own_line(draw(_tag("/", name))))
    return opening + body + closing


@st.composite
def _body(draw: st.DrawFn, depth: int, open_blocks: frozenset[str], inverted: bool) -> str:
    return "".join(draw(st.lists(_element(depth, open_blocks, inverted), max_size=5)))


templates = _body(0, frozenset(), False).map(
    # (e): chevron keeps the whitespace after a standalone tag on an unterminated last line.
    lambda text: text + "\n" if text.endswith(" ") else text
)


# -- the tests -----------------------------------------------------------------------------


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(template=templates, context=contexts)
@example(
    template="{{#a}}\n  {{b}} {{{p.c}}} {{&.}}\n{{/a}}{{^d}}none{{/d}}",
    context={"a": [{"b": 1.5}, "s&", 7], "p": {"c": "<x>"}, "d": {}},
)
@example(template="{{a}}|{{b}}|{{c}}|{{d}}|{{p}}", context={"a": True, "b": False, "c": 3.0})
def test_same_output_as_chevron(template: str, context: dict[str, Any]) -> None:
    ours = compile_template(template).render(context)
    theirs = chevron.render(template, for_chevron(context))
    assert ours == theirs


@pytest.mark.parametrize(
    ("template", "context", "ours", "chevrons"),
    [
        ("{{v}}", {"v": True}, "true", "True"),
        ("{{v}}", {"v": 3.0}, "3", "3.0"),
        ("{{{v}}}", {"v": {"k": [1, None]}}, '{"k":[1,null]}', "{'k': [1, None]}"),
        ("{{{v}}}", {"v": []}, "[]", ""),
        ("{{#v}}yes{{/v}}", {"v": {}}, "yes", ""),
    ],
)
def test_for_chevron_removes_differences_a_and_c(
    template: str, context: dict[str, Any], ours: str, chevrons: str
) -> None:
    """The differences are real (else the normalization should go), and it removes them."""
    assert compile_template(template).render(context) == ours
    assert chevron.render(template, context) == chevrons
    assert chevron.render(template, for_chevron(context)) == ours


def test_chevron_fails_dotted_names_context_precedence() -> None:
    """(b): the reason dotted names start only with root-only keys."""
    template = "{{#a}}{{b.c}}{{/a}}"
    context = {"a": {"b": {}}, "b": {"c": "ERROR"}}
    assert compile_template(template).render(context) == ""
    assert chevron.render(template, for_chevron(context)) == "ERROR"
