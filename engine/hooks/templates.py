"""Every template of a hook, compiled once when the hook set is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from engine.config.settings import AuthPair, BearerToken, HookConfig
from engine.templates import Template, TemplateError, compile_template
from engine.templates.json_template import JsonTemplate, JsonTemplateError

DEFAULT_RESPONSE_TOPIC = "hook-response/{{{TRACKLE_EVENT_NAME}}}"
PRODUCT_RESPONSE_TOPIC = "{{{TRACKLE_DEVICE_ID}}}/hook-response/{{{TRACKLE_EVENT_NAME}}}"
DEFAULT_ERROR_TOPIC = "hook-error/{{{TRACKLE_EVENT_NAME}}}"

Pairs = tuple[tuple[Template, Template], ...]


@dataclass(frozen=True, slots=True)
class HookTemplates:
    """A hook's request and response templates, ready to render against an event context.

    ``url``, header names and values and the bearer token refuse variables holding CR or LF.
    """

    url: Template
    json: JsonTemplate | None
    form: Pairs | None
    body: Template | None
    query: Pairs | None
    headers: Pairs | None
    auth: tuple[Template, Template] | None  # HTTP Basic: user name and password
    bearer: Template | None  # sent as "Authorization: Bearer <token>"
    response_topic: Template
    error_response_topic: Template
    response_template: Template | None


class HookTemplateErrors(Exception):
    """The template problems of one hook, each ``<where>.<field>: LINE:COL: problem``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def check_partials(partials: Mapping[str, str]) -> list[str]:
    """Problems in the ``[partials]`` themselves, as ``partials.NAME: LINE:COL: problem``."""
    problems = []
    for name, source in partials.items():
        try:
            compile_template(source, partials, strict_partials=True)
        except TemplateError as exc:
            problems.append(f"partials.{name}: {exc}")
    return problems


def compile_hook_templates(hook: HookConfig, partials: Mapping[str, str]) -> HookTemplates:
    """Compile every template of ``hook``; raises HookTemplateErrors with all problems."""
    problems: list[str] = []
    language = hook.template_language

    def one(source: str, field: str, *, header: bool = False) -> Template:
        if header and ("\r" in source or "\n" in source):
            problems.append(f"{hook.where}.{field}: a line break is not allowed here")
            return compile_template("")
        try:
            return compile_template(
                source,
                partials,
                refuse_line_breaks=header,
                strict_partials=True,
                language=language,
            )
        except TemplateError as exc:
            problems.append(f"{hook.where}.{field}: {exc}")
            return compile_template("")

    def pairs(table: Mapping[str, str] | None, field: str, *, header: bool = False) -> Pairs | None:
        if table is None:
            return None
        return tuple(
            (one(key, f"{field}.{key}", header=header), one(value, f"{field}.{key}", header=header))
            for key, value in table.items()
        )

    url = one(hook.url, "url", header=True)
    basic = hook.auth if isinstance(hook.auth, AuthPair) else None
    bearer = hook.auth.token if isinstance(hook.auth, BearerToken) else None
    json: JsonTemplate | None = None
    if hook.json is not None:
        try:
            json = JsonTemplate(
                hook.json,
                partials,
                typed=hook.typed_json,
                strict_partials=True,
                language=language,
            )
        except JsonTemplateError as exc:
            for error in exc.every:
                where = f"json.{error.path}" if error.path else "json"
                problems.append(f"{hook.where}.{where}: {error}")
    default_topic = PRODUCT_RESPONSE_TOPIC if hook.product is not None else DEFAULT_RESPONSE_TOPIC
    templates = HookTemplates(
        url=url,
        json=json,
        form=pairs(hook.form, "form"),
        body=one(hook.body, "body") if hook.body is not None else None,
        query=pairs(hook.query, "query"),
        headers=pairs(hook.headers, "headers", header=True),
        auth=(
            (one(basic.username, "auth.username"), one(basic.password, "auth.password"))
            if basic is not None
            else None
        ),
        bearer=one(bearer, "auth.bearer", header=True) if bearer is not None else None,
        response_topic=one(hook.response_topic or default_topic, "responseTopic"),
        error_response_topic=one(
            hook.error_response_topic or DEFAULT_ERROR_TOPIC, "errorResponseTopic"
        ),
        response_template=(
            one(hook.response_template, "responseTemplate")
            if hook.response_template is not None
            else None
        ),
    )
    if problems:
        raise HookTemplateErrors(problems)
    return templates
