"""The Handlebars parser: exact trees, whitespace control as handlebars.js 4.7 applies it
(its spec/whitespace-control.js and spec/blocks.js cases), every error with its line:column,
and properties over arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.templates.handlebars_parser import (
    UNDEFINED,
    Block,
    Expr,
    Literal,
    Mustache,
    Node,
    PathExpr,
    RawBlock,
    SubExpr,
    TemplateError,
    Text,
    parse_handlebars,
)
from engine.templates.parser import MAX_DEPTH, MAX_TEMPLATE_CHARS


def path(original: str, line: int, col: int) -> PathExpr:
    """The PathExpr of a plain dotted name at line:col."""
    return PathExpr(tuple(original.split(".")), 0, False, original, line, col)


def one(source: str) -> Node:
    (node,) = parse_handlebars(source)
    return node


# Exact trees


def test_text_and_escaped_and_raw_mustaches() -> None:
    assert parse_handlebars("a {{b.c}} d") == (
        Text("a "),
        Mustache(path("b.c", 1, 5), (), (), True, 1, 3),
        Text(" d"),
    )
    assert one("{{{a}}}") == Mustache(path("a", 1, 4), (), (), False, 1, 1)
    assert one("{{& a}}") == Mustache(path("a", 1, 5), (), (), False, 1, 1)
    assert one("{{~{a}~}}") == Mustache(path("a", 1, 5), (), (), False, 1, 1)
    assert parse_handlebars("") == ()


@pytest.mark.parametrize(
    ("source", "parts", "depth", "data", "original"),
    [
        ("{{a.b.c}}", ("a", "b", "c"), 0, False, "a.b.c"),
        ("{{a/b}}", ("a", "b"), 0, False, "a/b"),
        ("{{this}}", (), 0, False, "this"),
        ("{{this.a}}", ("a",), 0, False, "this.a"),
        ("{{.}}", (), 0, False, "."),
        ("{{./a}}", ("a",), 0, False, "./a"),
        ("{{..}}", (), 1, False, ".."),
        ("{{../a}}", ("a",), 1, False, "../a"),
        ("{{../../../a.b}}", ("a", "b"), 3, False, "../../../a.b"),
        ("{{@index}}", ("index",), 0, True, "@index"),
        ("{{@key}}", ("key",), 0, True, "@key"),
        ("{{@first}}", ("first",), 0, True, "@first"),
        ("{{@last}}", ("last",), 0, True, "@last"),
        ("{{@root.a}}", ("root", "a"), 0, True, "@root.a"),
        ("{{@../index}}", ("index",), 1, True, "@../index"),
        ("{{[weird key]}}", ("weird key",), 0, False, "weird key"),
        ("{{a.[b c].[0]}}", ("a", "b c", "0"), 0, False, "a.b c.0"),
        ("{{a.[this]}}", ("a", "this"), 0, False, "a.this"),
        ("{{[a\\]b]}}", ("a]b",), 0, False, "a]b"),
        ("{{c.0.d}}", ("c", "0", "d"), 0, False, "c.0.d"),
        ("{{ a . b }}", ("a",), 0, False, "a"),  # "." alone is an argument, as in handlebars
        ("{{a/ b}}", ("a", "b"), 0, False, "a/b"),
    ],
)
def test_paths(source: str, parts: tuple[str, ...], depth: int, data: bool, original: str) -> None:
    node = one(source)
    assert isinstance(node, Mustache) and isinstance(node.path, PathExpr)
    assert (node.path.parts, node.path.depth, node.path.data) == (parts, depth, data)
    assert node.path.original == original


def test_scoped_paths_are_never_helper_calls() -> None:
    scoped = {
        source: node.path.scoped
        for source in ("{{this.a}}", "{{./a}}", "{{.}}", "{{a}}", "{{../a}}", "{{thisa}}")
        if isinstance(node := one(source), Mustache) and isinstance(node.path, PathExpr)
    }
    assert scoped == {
        "{{this.a}}": True,
        "{{./a}}": True,
        "{{.}}": True,
        "{{a}}": False,
        "{{../a}}": True,  # handlebars' /^\.|this\b/ counts "../" too
        "{{thisa}}": False,
    }


def test_helper_calls_with_arguments_and_hash() -> None:
    assert one("{{lookup (lookup a b) c}}").params[0] == SubExpr(
        path("lookup", 1, 11), (path("a", 1, 18), path("b", 1, 20)), (), 1, 10
    )
    assert one("{{lookup a b}}") == Mustache(
        path("lookup", 1, 3), (path("a", 1, 10), path("b", 1, 12)), (), True, 1, 1
    )
    assert one('{{log "text" a level="warn"}}') == Mustache(
        path("log", 1, 3),
        (Literal("text", 1, 7), path("a", 1, 14)),
        (("level", Literal("warn", 1, 22)),),
        True,
        1,
        1,
    )
    node = one('{{f \'it\\\'s\' "say \\"hi\\"" 1 -2.5 1.0 true false null undefined k=x}}')
    assert isinstance(node, Mustache)
    values = [p.value for p in node.params if isinstance(p, Literal)]
    assert values == ["it's", 'say "hi"', 1, -2.5, 1, True, False, None, UNDEFINED]
    assert node.hash == (("k", path("x", 1, 65)),)


def test_literals_as_names_and_ids_that_look_like_literals() -> None:
    assert one('{{"a b"}}') == Mustache(Literal("a b", 1, 3), (), (), True, 1, 1)
    node = one("{{f true.x 1a null}}")
    assert isinstance(node, Mustache)
    expected: tuple[Expr, ...] = (
        PathExpr(("true", "x"), 0, False, "true.x", 1, 5),
        path("1a", 1, 12),
        Literal(None, 1, 15),
    )
    assert node.params == expected


def test_if_else_if_else_chain() -> None:
    assert one("{{#if a}}x{{else if b}}y{{else}}z{{/if}}") == Block(
        path("if", 1, 4),
        (path("a", 1, 7),),
        (),
        (),
        (Text("x"),),
        (
            Block(
                path("if", 1, 18),
                (path("b", 1, 21),),
                (),
                (),
                (Text("y"),),
                (Text("z"),),
                False,
                1,
                11,
            ),
        ),
        False,
        1,
        1,
    )


@pytest.mark.parametrize("inverse", ["{{else}}", "{{^}}", "{{ else }}", "{{~^~}}"])
def test_else_and_its_synonyms(inverse: str) -> None:
    node = one("{{#unless a}}x" + inverse + "y{{/unless}}")
    assert isinstance(node, Block)
    assert (node.body, node.inverse) == ((Text("x"),), (Text("y"),))


def test_each_with_block_params_and_with() -> None:
    assert one("{{#each xs as |item i|}}{{item}}{{else}}none{{/each}}") == Block(
        path("each", 1, 4),
        (path("xs", 1, 9),),
        (),
        ("item", "i"),
        (Mustache(path("item", 1, 27), (), (), True, 1, 25),),
        (Text("none"),),
        False,
        1,
        1,
    )
    node = one("{{#with a.b as |c|}}{{c}}{{/with}}")
    assert isinstance(node, Block) and node.block_params == ("c",)
    node = one("{{#each o includeZero=true}}{{/each}}")
    assert isinstance(node, Block) and node.hash == (("includeZero", Literal(True, 1, 23)),)


def test_plain_and_inverted_sections() -> None:
    assert one("{{#name}}x{{/name}}") == Block(
        path("name", 1, 4), (), (), (), (Text("x"),), (), False, 1, 1
    )
    # {{^x}}: handlebars swaps the two bodies, so "x" is the inverse.
    assert one("{{^name}}x{{else}}y{{/name}}") == Block(
        path("name", 1, 4), (), (), (), (Text("y"),), (Text("x"),), True, 1, 1
    )


def test_unknown_helpers_are_recorded_not_refused() -> None:
    node = one("{{#repeat 3 sep=','}}x{{/repeat}}")
    assert isinstance(node, Block) and node.path == path("repeat", 1, 4)


def test_comments_are_dropped_and_may_hold_braces() -> None:
    assert parse_handlebars("a{{! note }}b{{!-- {{x}} }} --}}c{{!--}}d") == (Text("abcd"),)


def test_escaped_mustaches_are_text() -> None:
    assert parse_handlebars("a\\{{b}} {{c}}") == (
        Text("a{{b}} "),
        Mustache(path("c", 1, 11), (), (), True, 1, 9),
    )
    assert parse_handlebars("\\\\{{c}}") == (
        Text("\\"),
        Mustache(path("c", 1, 5), (), (), True, 1, 3),
    )


def test_raw_blocks_keep_their_content() -> None:
    assert one("{{{{raw}}}} {{x}} {{#if}} {{{{/raw}}}}") == RawBlock(
        path("raw", 1, 5), (), (), " {{x}} {{#if}} ", 1, 1
    )
    nested = one("{{{{a}}}}{{{{b}}}}{{/b}}{{{{/b}}}}{{{{/a}}}}")
    assert isinstance(nested, RawBlock) and nested.text == "{{{{b}}}}{{/b}}{{{{/b}}}}"
    assert one("{{{{raw}}}}{{{{/raw}}}}") == RawBlock(path("raw", 1, 5), (), (), "", 1, 1)


def test_lexical_corners_as_handlebars_js() -> None:
    # JavaScript's whitespace (no-break space too) separates words in a tag.
    assert one("{{\u00a0a\u00a0}}") == Mustache(path("a", 1, 4), (), (), True, 1, 1)
    # "else" is a keyword only as a whole word.
    assert one("{{elsewhere}}") == Mustache(path("elsewhere", 1, 3), (), (), True, 1, 1)
    # "as |x|" after an inverted block's name: the names belong to its inverse.
    node = one("{{^each xs as |x|}}none{{/each}}")
    assert isinstance(node, Block)
    assert (node.inverted, node.block_params, node.inverse) == (True, ("x",), (Text("none"),))


def test_positions_on_later_lines() -> None:
    tree = parse_handlebars("a\n  {{#if x}}\n y {{v}}\n  {{/if}}")
    block = tree[1]
    assert isinstance(block, Block) and (block.line, block.col) == (2, 3)
    variable = block.body[1]
    assert isinstance(variable, Mustache) and (variable.line, variable.col) == (3, 4)


# Whitespace control, as rendered by handlebars.js's own spec (spec/whitespace-control.js,
# spec/blocks.js): the tree holds the text left after "~" and the standalone-line rule.


def shape(nodes: tuple[Node, ...]) -> str:
    """A compact picture of a tree: <name args> mustaches, [#name args|body|inverse] blocks."""
    out = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Mustache):
            out.append(f"<{'' if node.escape else '&'}{words(node.path, *node.params)}>")
        elif isinstance(node, Block):
            mark = "^" if node.inverted else "#"
            names = words(node.path, *node.params)
            out.append(f"[{mark}{names}|{shape(node.body)}|{shape(node.inverse)}]")
        else:
            out.append(f"[raw|{node.text}]")
    return "".join(out)


def words(*exprs: Expr) -> str:
    return " ".join(e.original if isinstance(e, PathExpr) else str(e.value).lower() for e in exprs)


@pytest.mark.parametrize(
    ("source", "tree"),
    [
        # mustaches
        (" {{~foo~}} ", "<foo>"),
        (" {{~foo}} ", "<foo> "),
        (" {{foo~}} ", " <foo>"),
        (" {{~&foo~}} ", "<&foo>"),
        (" {{~{foo}~}} ", "<&foo>"),
        ("1\n{{foo~}} \n\n 23\n{{bar}}4", "1\n<foo>23\n<bar>4"),
        (" {{~foo~}} {{foo}} {{foo}} ", "<foo><foo> <foo> "),
        # simple blocks
        (" {{~#if foo~}} bar {{~/if~}} ", "[#if foo|bar|]"),
        (" {{#if foo~}} bar {{/if~}} ", " [#if foo|bar |]"),
        (" {{~#if foo}} bar {{~/if}} ", "[#if foo| bar|] "),
        (" {{#if foo}} bar {{/if}} ", " [#if foo| bar |] "),
        (" \n\n{{~#if foo~}} \n\nbar \n\n{{~/if~}}\n\n ", "[#if foo|bar|]"),
        (" a\n\n{{~#if foo~}} \n\nbar \n\n{{~/if~}}\n\na ", " a[#if foo|bar|]a "),
        # inverse blocks
        (" {{~^if foo~}} bar {{~/if~}} ", "[^if foo||bar]"),
        (" {{^if foo~}} bar {{/if~}} ", " [^if foo||bar ]"),
        (" {{~^if foo}} bar {{~/if}} ", "[^if foo|| bar] "),
        (" {{^if foo}} bar {{/if}} ", " [^if foo|| bar ] "),
        (" \n\n{{~^if foo~}} \n\nbar \n\n{{~/if~}}\n\n ", "[^if foo||bar]"),
        # complex blocks
        ("{{#if foo~}} bar {{~^~}} baz {{~/if}}", "[#if foo|bar|baz]"),
        ("{{#if foo~}} bar {{^~}} baz {{/if}}", "[#if foo|bar |baz ]"),
        ("{{#if foo}} bar {{~^~}} baz {{~/if}}", "[#if foo| bar|baz]"),
        ("{{#if foo}} bar {{^~}} baz {{/if}}", "[#if foo| bar |baz ]"),
        ("{{#if foo~}} bar {{~else~}} baz {{~/if}}", "[#if foo|bar|baz]"),
        ("\n\n{{~#if foo~}} \n\nbar \n\n{{~^~}} \n\nbaz \n\n{{~/if~}}\n\n", "[#if foo|bar|baz]"),
        (
            "\n\n{{~#if foo~}} \n\n{{{foo}}} \n\n{{~^~}} \n\nbaz \n\n{{~/if~}}\n\n",
            "[#if foo|<&foo>|baz]",
        ),
        ("{{#if foo~}} bar {{~^}} baz {{~/if}}", "[#if foo|bar| baz]"),
        ("{{#if foo~}} bar {{~^}} baz {{/if}}", "[#if foo|bar| baz ]"),
        # standalone lines (spec/blocks.js)
        ("{{#people}}\n{{name}}\n{{^}}\n{{none}}\n{{/people}}\n", "[#people|<name>\n|<none>\n]"),
        ("{{#none}}\n{{.}}\n{{^}}\n{{none}}\n{{/none}}\n", "[#none|<.>\n|<none>\n]"),
        (
            "{{#people}}\n{{name}}\n{{else if none}}\n{{none}}\n{{/people}}\n",
            "[#people|<name>\n|[#if none|<none>\n|]]",
        ),
        (
            "{{#people}}\n{{name}}\n{{else if none}}\n{{none}}\n{{^}}\n{{/people}}\n",
            "[#people|<name>\n|[#if none|<none>\n|]]",
        ),
        (
            "{{#data}}\n{{#if true}}\n{{.}}\n{{/if}}\n{{/data}}\nOK.",
            "[#data|[#if true|<.>\n|]|]OK.",
        ),
        # standalone comments and indented tags; mustaches are never standalone
        ("a\n  {{! note }}  \nb", "a\nb"),
        ("a\n  {{#if x}}  \r\n  b\n  {{/if}}\nc", "a\n[#if x|  b\n|]c"),
        ("a\n  {{x}}  \nb", "a\n  <x>  \nb"),
        ("  {{#if x}}\n{{/if}}", "[#if x||]"),
        # raw blocks follow the standalone rule too, their content does not
        ("{{{{raw}}}}\n{{x}}\n{{{{/raw}}}}\n", "[raw|{{x}}\n]"),
        ("{{{{raw}}}} {{~x~}} {{{{/raw}}}}", "[raw| {{~x~}} ]"),
    ],
)
def test_whitespace_control_as_handlebars_js(source: str, tree: str) -> None:
    assert shape(parse_handlebars(source)) == tree


# Mistakes, each with its position


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{a", '1:1: tag is never closed: expected "}}"'),
        ("x {{{a}}", '1:7: "{{{" is closed by "}}": expected "}}}"'),
        ("{{a}}}", '1:4: "{{" is closed by "}}}": expected "}}"'),
        ("{{a {{b}}", '1:1: tag is never closed: expected "}}" before the {{ at 1:5'),
        ("{{}}", '1:3: unexpected "}}": expected a helper name, a path or a literal'),
        ("{{#}}", '1:4: unexpected "}}": expected a helper name, a path or a literal'),
        ("{{/}}", '1:4: unexpected "}}": expected the name of the block to close'),
        ("{{a.1}}", '1:5: unexpected "1": expected a name after "a." (write a.[1])'),
        ("{{a.true}}", '1:5: unexpected "true": expected a name after "a." (write a.[true])'),
        ("{{a.this}}", '1:3: invalid path "a.this": "this" may only begin a path'),
        ("{{a/../b}}", '1:3: invalid path "a/..": ".." may only begin a path'),
        ("{{@}}", '1:4: unexpected "}}": expected a name after "@"'),
        ('{{a "b}}', '1:5: string is never closed: expected a closing "'),
        ("{{[a}}", '1:3: literal segment is never closed: expected "]"'),
        ("{{a ~ b}}", '1:5: "~" may only follow "{{" or come right before "}}"'),
        ("{{a!}}", '1:4: unexpected "!" after "a": expected a space, ".", "/", "=" or "}}"'),
        ("{{a #}}", '1:5: unexpected "#": expected an argument, key=value or "}}"'),
        ("{{a=1}}", '1:4: unexpected "=": expected an argument, key=value or "}}"'),
        ("{{a k=}}", '1:7: unexpected "}}": expected a value after "k="'),
        ("{{a k=1 b}}", "1:9: an argument after key=value arguments: positional ones come first"),
        ("{{a as |x|}}", '1:5: block parameters ("as |x|") belong on a {{#block}} tag'),
        ("{{#each xs as ||}}{{/each}}", '1:16: unexpected "|": expected a name'),
        ("{{#each xs as |x}}{{/each}}", '1:17: unexpected "}}": expected another name or "|"'),
        ("{{#each x as |[y]|}}{{/each}}", "1:15: a block parameter must be a plain name, not [y]"),
        ("{{#if a}}x{{/each}}", '1:11: block "if" (opened at 1:1) is closed by "each"'),
        ("{{#a.b}}{{/a/b}}", '1:9: block "a.b" (opened at 1:1) is closed by "a/b"'),
        ("{{#if a}}\nx", '1:1: block "if" is never closed: expected "{{/if}}"'),
        ("x\n  {{/if}}", '2:3: closing tag "if" has no open block'),
        ("{{#if a}}{{/if x}}", '1:16: unexpected "x": expected "}}" (a closing tag holds only'),
        ("a {{else}}", "1:3: {{else}} is outside any block"),
        ("{{^}}", "1:1: {{else}} is outside any block"),
        ("{{else if a}}", "1:1: {{else}} is outside any block"),
        (
            "{{#if a}}{{else}}\n{{else}}{{/if}}",
            '2:1: block "if" (opened at 1:1) already has an {{else}}: expected "{{/if}}"',
        ),
        (
            "{{#if a}}{{else}}{{else if b}}{{/if}}",
            '1:18: block "if" (opened at 1:1) already has an {{else}}',
        ),
        (
            "{{^a}}{{else if b}}{{/a}}",
            '1:7: "{{else…}}" cannot follow "{{^a}}" (opened at 1:1): an inverted block takes',
        ),
        ("{{{{raw}}}} x", '1:1: raw block "raw" is never closed: expected "{{{{/raw}}}}"'),
        ("{{{{raw}}}}x{{{{/b}}}}", '1:13: raw block "raw" (opened at 1:1) is closed by "b"'),
        ("{{{{1}}}}x{{{{/1}}}}", "1:11: raw block 1 (opened at 1:1) can never be closed"),
        ("a\n{{!-- x }}", '2:1: comment is never closed: expected "--}}"'),
        ("{{! x", '1:1: comment is never closed: expected "}}"'),
        ("{{> p}}", "1:1: partials ({{> name}}) are not supported in Handlebars templates yet"),
        ("{{#> p}}{{/p}}", "1:1: partials ({{> name}}) are not supported"),
        ("{{* d}}", "1:1: decorators ({{* …}}) are not supported in Handlebars templates"),
        ("{{#* inline 'x'}}{{/inline}}", "1:1: decorators ({{* …}}) are not supported"),
        ("{{(lookup a b)}}", '1:3: unexpected "(": expected a helper name, a path or a literal'),
        ("{{lookup a ()}}", '1:13: unexpected ")": expected a helper name after "("'),
        ("{{lookup a (b c}}", '1:16: unexpected "}}": expected an argument, key=value or ")"'),
        ("a\x00b", "1:2: a NUL character is not allowed in a template"),
        ("{{#a}}" * (MAX_DEPTH + 1), f"1:{6 * MAX_DEPTH + 1}: blocks nested more than 64 deep"),
    ],
)
def test_mistakes_are_named_with_their_position(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_handlebars(source)
    assert str(caught.value).startswith(message)


def test_limits() -> None:
    deep = "{{#a}}" * MAX_DEPTH + "x" + "{{/a}}" * MAX_DEPTH
    assert shape(parse_handlebars(deep)) == "[#a|" * MAX_DEPTH + "x" + "|]" * MAX_DEPTH
    chain = "{{#if a}}" + "{{else if b}}" * MAX_DEPTH + "{{/if}}"
    with pytest.raises(TemplateError, match="nested more than"):
        parse_handlebars(chain)
    with pytest.raises(TemplateError, match="the limit is"):
        parse_handlebars("x" * (MAX_TEMPLATE_CHARS + 1))


# Properties

_PIECES = [
    *"{}#^/!>&=~|.@[]()\"' \n\t\r\\ab1",
    "{{",
    "}}",
    "{{#if a}}",
    "{{/if}}",
    "{{else}}",
    "{{{{raw}}}}",
    "{{{{/raw}}}}",
    " as |x| ",
    "{{!--",
    "--}}",
    "../",
    "this",
    "\u00a0",
]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30).map("".join) | st.text(max_size=60))
def test_any_text_parses_or_raises_template_error(source: str) -> None:
    try:
        parse_handlebars(source)
    except TemplateError as exc:
        assert exc.line >= 1 and exc.col >= 1


@given(st.text(min_size=1).filter(lambda s: "{{" not in s and "\x00" not in s))
def test_text_without_tags_is_one_text_node(source: str) -> None:
    assert parse_handlebars(source) == (Text(source),)


@given(st.text().filter(lambda s: (s + "{{{{").find("{{{{") == len(s) and "\x00" not in s))
def test_raw_blocks_keep_their_content_byte_for_byte(content: str) -> None:
    # Text on both sides: the block is not alone on its line, so no standalone stripping.
    tree = parse_handlebars("x{{{{raw}}}}" + content + "{{{{/raw}}}}y")
    assert tree == (Text("x"), RawBlock(path("raw", 1, 6), (), (), content, 1, 2), Text("y"))
