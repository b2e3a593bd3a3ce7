"""A hook compiled from its config, once: what every delivery to it needs, found by name."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.config.settings import Config, ConfigError, HookConfig, read_config_as_far_as_possible
from engine.core.model import hook_tag
from engine.core.retry import DEFAULT_DELAYS, RetrySchedule
from engine.core.signing import Signer
from engine.hooks.templates import (
    HookTemplateErrors,
    HookTemplates,
    check_partials,
    compile_hook_templates,
)

_CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(HookConfig))


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook(HookConfig):
    """A hook as written (every HookConfig field) plus what was compiled from it.

    A Hook is its validated config, so ``hook.url`` or ``hook.timeout`` read as before; the
    compiled parts do not take part in equality.
    """

    templates: HookTemplates = field(compare=False, repr=False)
    tag: str = field(compare=False, repr=False)  # its part of delivery ids (model.hook_tag)
    schedule: RetrySchedule = field(compare=False, repr=False)  # its own, or [delivery] retry
    signer: Signer | None = field(compare=False, repr=False)  # None: it has no secret


def compile_hook(
    hook: HookConfig,
    partials: Mapping[str, str],
    default_retry: tuple[float, ...] = DEFAULT_DELAYS,
) -> Hook:
    """``hook`` compiled; raises HookTemplateErrors listing every template problem.

    ``default_retry`` is the ``[delivery] retry`` schedule, for hooks without their own.
    """
    if isinstance(hook, Hook):
        return hook
    templates = compile_hook_templates(hook, partials)
    values = {name: getattr(hook, name) for name in _CONFIG_FIELDS}
    return Hook(
        **values,
        templates=templates,
        tag=hook_tag(hook.name),
        schedule=RetrySchedule(hook.retry if hook.retry is not None else default_retry),
        signer=Signer(hook.secret) if hook.secret else None,
    )


def compile_hooks(config: Config, source: str | None = None) -> Config:
    """``config`` with every hook compiled, so a broken template stops the start, not a delivery.

    Raises ConfigError with every problem as ``<source>: <where>.<field>: LINE:COL: problem``
    (``source`` defaults to the config's path). Hooks compiled already are kept as they are.
    """
    if all(isinstance(hook, Hook) for hook in config.hooks):
        return config
    problems = check_partials(config.partials)
    hooks: list[HookConfig] = []
    for hook in config.hooks:
        try:
            hooks.append(compile_hook(hook, config.partials, config.delivery.retry))
        except HookTemplateErrors as exc:
            problems.extend(exc.problems)
    if problems:
        where = str(config.path) if source is None else source
        raise ConfigError([f"{where}: {problem}" for problem in problems])
    return dataclasses.replace(config, hooks=tuple(hooks))


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and check a config file and compile its hooks: what ``hookwire check`` reports.

    Raises ConfigError listing every problem found: the values' and, even when some are
    wrong, the templates' of every hook that could be read.
    """
    config, problems = check_config(path, environ)
    if problems:
        raise ConfigError(problems)
    return config


def check_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[Config, list[str]]:
    """The config read as far as it can be, its hooks compiled when they all compile, and
    every problem: the values' and the templates' of every hook that could be read.
    ConfigError only when the file cannot be read at all."""
    config, problems = read_config_as_far_as_possible(path, environ)
    try:
        config = compile_hooks(config, os.fspath(path))
    except ConfigError as exc:
        problems = problems + exc.problems
    return config, problems
