"""`hookwire render` and `hookwire check` on templates, as a user runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli


@pytest.mark.parametrize(
    ("args", "out"),
    [
        (["Hi {{name}}!", "--context", '{"name":"<Ann>"}'], b"Hi &lt;Ann&gt;!"),
        (
            ["{{{a.0.b}}}|{{n}}|{{t}}", "--context", '{"a":[{"b":3.0}],"n":null,"t":true}'],
            b"3||true",
        ),
        (
            [
                '{"t":{{{temp}}},"d":"{{{PARTICLE_DEVICE_ID}}}"}',
                "--event",
                "temp",
                "--data",
                '{"temp":21.5}',
                "--device",
                "dev9",
            ],
            b'{"t":21.5,"d":"dev9"}',
        ),
        (["<{{>p}}>\n", "--partials", '{"p":"[{{x}}]"}', "--context", '{"x":1}'], b"<[1]>\n"),
        (["line\n"], b"line\n"),
        # The two commands, as a Trackle user writes them.
        (
            [
                "--language",
                "handlebars",
                "{{#if ok}}yes{{else}}no{{/if}}",
                "--context",
                '{"ok": true}',
            ],
            b"yes",
        ),
        (
            [
                "--language",
                "handlebars",
                "{{#each items}}{{@index}}={{this}},{{/each}}",
                "--context",
                '{"items": [1,2]}',
            ],
            b"0=1,1=2,",
        ),
        (
            [
                "--language=handlebars",
                "{{#each r as |x|}}{{x.v}}{{#unless @last}};{{/unless}}{{/each}} {{d}}",
                "--event",
                "t",
                "--data",
                '{"r":[{"v":1},{"v":"<2>"}],"d":"`=\'"}',
            ],
            b"1;&lt;2&gt; &#x60;&#x3D;&#x27;",
        ),
    ],
)
async def test_render_prints_exactly_the_render(args: list[str], out: bytes) -> None:
    result = await run_cli("render", *args)
    assert (result.returncode, result.stdout, result.stderr) == (0, out, b"")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["a\n {{#tags}}x"], b'2:2: section "tags" is never closed'),
        (["x", "--context", "{bad"], b"--context: not valid JSON"),
        (["x", "--partials", "[1]"], b"--partials: expected a JSON object of strings"),
        (
            ["{{#if ok}}yes{{else}}no{{/if}}"],
            b'1:24: section "if ok" (opened at 1:1) is closed by "if" (#if is a Handlebars '
            b'helper: set template_language = "handlebars")',
        ),
        (
            ["--language", "handlebars", "a\n{{#foo bar}}x{{/foo}}"],
            b'2:4: unknown helper "foo": the built-in helpers are if, unless, each, with, '
            b"lookup and log",
        ),
        (
            ["--language", "handlebars", "{{#if a}}x{{/each}}"],
            b'1:11: block "if" (opened at 1:1) is closed by "each"',
        ),
        (
            ["--language", "handlebars", "x", "--partials", '{"p": "y"}'],
            b"--partials: partials are Mustache's; Handlebars templates have none",
        ),
        (["--language", "jinja", "x"], b"invalid choice: 'jinja'"),
    ],
)
async def test_render_errors_go_to_stderr(args: list[str], error: bytes) -> None:
    result = await run_cli("render", *args)
    assert result.returncode in (1, 2)  # 2: argparse's, for an unknown option value
    assert result.stdout == b""
    assert error in result.stderr
    assert b"Traceback" not in result.stderr


async def test_check_reports_template_errors_with_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    (tmp_path / "var").mkdir()  # the default journal's folder: check wants it, as run does
    config.write_text(
        '[[hooks]]\nevent = "t"\nurl = "http://127.0.0.1/"\n'
        'json = \'{"tags": [{{#tags}}"{{.}}"]}\'\n'
    )
    result = await run_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        f'{config}: hooks[0].json: 1:11: section "tags" is never closed'
    )


async def test_check_reports_handlebars_errors_of_every_field(tmp_path: Path) -> None:
    config = tmp_path / "engine.toml"
    (tmp_path / "var").mkdir()  # the default journal's folder: check wants it, as run does
    config.write_text(
        '[templates]\nlanguage = "handlebars"\n'
        '[[hooks]]\nevent = "t"\nurl = "http://127.0.0.1/{{#each a}}"\n'
        "body = '{{#if a}}{{eq a 1}}{{/if}}'\n"
        '[[hooks]]\nevent = "u"\nurl = "http://127.0.0.1/{{{{raw}}}}"\n'
        'template_language = "mustache"\n'
    )
    result = await run_cli("check", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f'{config}: hooks[0].url: 1:18: block "each" is never closed: expected "{{{{/each}}}}"',
        f'{config}: hooks[0].body: 1:12: unknown helper "eq": the built-in helpers are if, '
        "unless, each, with, lookup and log",
    ]


async def test_import_checks_a_particle_document_and_prints_its_entry(tmp_path: Path) -> None:
    good = ROOT / "config" / "examples" / "hooks" / "legacy-particle-webhook.json"
    result = await run_cli("import", str(good), "--name", "legacy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[1:] == [
        "[[hooks]]",
        'name = "legacy"',
        f'particle = "{good}"',
    ]
    for text, error in [
        ('{"event": "x", "url": "http://h/", "requestType": "POTS"}', "requestType: expected one"),
        ('{"event": "x", "url": "http://h/{{#a}}"}', 'url: 1:10: section "a" is never closed'),
        ('{"event": "x", "url": ', "not valid JSON"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        result = await run_cli("import", str(bad))
        assert result.returncode == 1
        assert error in result.stderr.decode()


async def test_receiver_prints_what_arrives_and_answers_json() -> None:
    import httpx
    import trio

    from tests.helpers import HOOKWIRE

    process = await trio.lowlevel.open_process(
        [*HOOKWIRE, "receiver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        banner = b""
        with trio.fail_after(10):
            while b"\n" not in banner:
                banner += await process.stderr.receive_some(1024)
        url = banner.decode().split("on ")[1].strip()
        async with httpx.AsyncClient() as client:
            answer = await client.post(url + "/hook", content=b"a=1", headers={"webhook-id": "m1"})
        assert answer.json() == {"ok": True, "received": 1}
        line = b""
        with trio.fail_after(10):
            while b"\n" not in line:
                line += await process.stdout.receive_some(1024)
        assert line.decode() == "POST /hook m1 a=1\n"
    finally:
        process.terminate()
        with trio.fail_after(5):
            assert await process.wait() == 0
