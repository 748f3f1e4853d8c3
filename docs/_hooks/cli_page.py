"""The CLI reference page, written from ``legato.cli``'s argparse parser.

Every command and sub-command, its usage, its description and a table of its
arguments (flags, default, help), in the parser's own order. Nothing here is
typed by hand: a flag added to the parser is on the page at the next build.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

# argparse keeps what a page needs (actions, sub-parsers, their help) in attributes
# with a leading underscore and no public accessor; every argparse-to-docs tool reads
# them the same way, and they have not changed since Python 3.2.
_USAGE_WIDTH = 88


@dataclass(frozen=True)
class Command:
    """One parser on the page: ``legato``, ``legato tx``, ``legato tx list``..."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    help: str | None
    aliases: tuple[str, ...]


def commands(
    parser: argparse.ArgumentParser,
    path: tuple[str, ...] = ("legato",),
    help: str | None = None,
    aliases: tuple[str, ...] = (),
) -> Iterator[Command]:
    """``parser`` and every sub-command under it, depth first, in the parser's order."""
    yield Command(path, parser, help, aliases)
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        names: dict[int, list[str]] = {}
        for name, sub in action.choices.items():
            names.setdefault(id(sub), []).append(name)
        seen: set[int] = set()
        for sub in action.choices.values():
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            name, *others = names[id(sub)]
            yield from commands(sub, (*path, name), helps.get(name), tuple(others))


_MARKDOWN = str.maketrans({"\\": "\\\\", "*": "\\*", "_": "\\_", "`": "\\`", "<": "&lt;"})


def _text(text: str) -> str:
    """argparse's plain text, shown as written: ``*.svc:8000`` is not emphasis."""
    return text.translate(_MARKDOWN)


def _cell(text: str) -> str:
    """Plain text made safe for one cell of a Markdown table."""
    return _text(" ".join(text.split())).replace("|", "\\|")


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=_USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _names(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        if action.nargs == 0:
            return flags
        metavar = action.metavar or action.dest.upper()
        if action.choices is not None and action.metavar is None:
            metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
        return f"{flags} `{metavar}`"
    return f"`{action.metavar or action.dest}`"


def _default(action: argparse.Action) -> str:
    default = action.default
    if default is None or default is argparse.SUPPRESS:
        return ""
    if action.nargs == 0 and isinstance(default, bool):
        return ""  # a switch: off unless given
    if default == []:
        return ""
    return f"`{default}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = _cell(parser._get_formatter()._expand_help(action)) if action.help else ""
    if action.choices is not None and not action.option_strings:
        choices = ", ".join(f"`{c}`" for c in action.choices)
        text = f"{text} (one of {choices})" if text else f"one of {choices}"
    if action.required and action.option_strings:
        text = f"**required**. {text}"
    return text


def _arguments(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help is argparse.SUPPRESS:
            continue
        rows.append(f"| {_names(action)} | {_default(action)} | {_help(parser, action)} |")
    if not rows:
        return []
    return ["| argument | default | what |", "|---|---|---|", *rows, ""]


def _subcommands(command: Command, children: list[Command]) -> list[str]:
    if not children:
        return []
    lines = ["| command | what |", "|---|---|"]
    for child in children:
        name = " ".join(child.path)
        also = f" (also `{'`, `'.join(child.aliases)}`)" if child.aliases else ""
        lines.append(f"| [`{name}`](#{_anchor(child)}){also} | {_cell(child.help or '')} |")
    return [*lines, ""]


def _anchor(command: Command) -> str:
    return "-".join(command.path)


def page(parser: argparse.ArgumentParser) -> str:
    """The whole page, in Markdown."""
    everything = list(commands(parser))
    lines = [
        "# CLI reference",
        "",
        "Every `legato` command, generated from the argument parser of `legato.cli` when",
        "the site is built, so it says what the installed command does. `legato COMMAND",
        "--help` prints the same.",
        "",
    ]
    for command in everything:
        depth = len(command.path)
        title = " ".join(command.path)
        heading = "#" * min(depth + 1, 4)
        lines += [f"{heading} `{title}` {{ #{_anchor(command)} }}", ""]
        if command.help:
            lines += [_cell(command.help[:1].upper() + command.help[1:]) + ".", ""]
        if command.aliases:
            also = (" ".join((*command.path[:-1], alias)) for alias in command.aliases)
            lines += ["Also " + ", ".join(f"`{name}`" for name in also) + ".", ""]
        if command.parser.description and command.parser.description != command.help:
            lines += [_text(command.parser.description.strip()), ""]
        lines += ["```text", _usage(command.parser), "```", ""]
        children = [c for c in everything if c.path[:-1] == command.path]
        lines += _subcommands(command, children)
        lines += _arguments(command.parser)
        if command.parser.epilog:
            lines += [_text(command.parser.epilog.strip()), ""]
    return "\n".join(lines)
