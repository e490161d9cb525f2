"""The command line's building blocks: options that name their ``--help`` section, commands
that list options section by section, and the lazily loaded group.

Only click is imported here: ``storelab --help`` must not pay for what the commands use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import click

__all__ = ["JSON", "LazyGroup", "PanelOption", "SectionedCommand", "SectionedGroup", "json_option", "option", "options"]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

JSON = "as_json"
"""The parameter name every ``--json`` flag is passed as (``json`` is the module)."""


class PanelOption(click.Option):
    """An option that names its section of ``--help`` (Chunking, Store, Cluster, …)."""

    def __init__(self, *args: Any, panel: str = "Options", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.panel = panel


class _WholeSummary(click.Command):
    """A command's line in its group's ``--help`` is its docstring's whole first sentence
    (click would cut it at the terminal's width less the longest name)."""

    def get_short_help_str(self, limit: int = 45) -> str:
        return super().get_short_help_str(limit=300)


class SectionedCommand(_WholeSummary):
    """``--help`` lists the options section by section (click lists the arguments)."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = None if isinstance(param, click.Argument) else param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "panel", "Options"), []).append(record)
        for title in sorted(sections, key=lambda t: t != "Options"):  # Options first, then as declared
            with formatter.section(title):
                formatter.write_dl(sections[title])


class SectionedGroup(_WholeSummary, click.Group):
    """A group whose commands (and sub-groups) are sectioned too."""

    command_class = SectionedCommand
    group_class = type  # sub-groups are SectionedGroups too


class LazyGroup(SectionedGroup):
    """A group whose commands live in modules loaded only when a command runs.

    ``lazy`` maps each command name to ``(module:attribute, summary)``; the summary is what the
    group's ``--help`` lists, so listing the commands imports none of them (a test holds each
    summary equal to its command's own first sentence).

    >>> group = LazyGroup(name="g", lazy={"compact": ("storelab.cli.dataset:compact_command", "Merge every part.")})
    >>> group.list_commands(click.Context(group)), group.get_command(click.Context(group), "compact").name
    (['compact'], 'compact')
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            return load_command(self.lazy[cmd_name][0])
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) if name in self.lazy else (name, self._summary(ctx, name)) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _summary(self, ctx: click.Context, name: str) -> str:
        command = super().get_command(ctx, name)
        return command.get_short_help_str() if command is not None else ""


def load_command(where: str) -> click.Command:
    """The command object at ``module:attribute``."""
    module, _, attribute = where.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command), where
    return command


def option(*decls: str, **kwargs: Any) -> Decorator:
    """``click.option`` whose ``panel=`` names its ``--help`` section."""
    return click.option(*decls, cls=PanelOption, **kwargs)


def options(*decorators: Decorator) -> Decorator:
    """Several options as one decorator; ``--help`` lists them in the order given."""

    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def json_option(help: str) -> Decorator:
    """The ``--json`` flag (passed as ``as_json``)."""
    return option("--json", JSON, is_flag=True, help=help)

