"""The reference pages the site's build writes from the code (``docs/_hooks/``) name
every command, flag, path and schema there is, and the API page every public module:
nothing is left for a hand to add."""

from __future__ import annotations

import argparse
import pkgutil
import re

from docs._hooks import cli_page, http_page

from legato.cli import build_parser
from tests.support.code_blocks import ROOT


def test_the_cli_page_has_every_command_and_every_flag() -> None:
    parser = build_parser()
    page = cli_page.page(parser)
    commands = list(cli_page.commands(parser))
    assert {" ".join(c.path) for c in commands} >= {"legato tx list", "legato serve"}
    for command in commands:
        assert f"`{' '.join(command.path)}` {{ #{'-'.join(command.path)} }}" in page
        for action in command.parser._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                assert f"`{flag}`" in page, f"{flag} of {command.path}"


def test_an_alias_is_named_on_its_command_not_repeated() -> None:
    page = cli_page.page(build_parser())
    assert "Also `legato tx abort`." in page
    assert "`legato tx abort` {" not in page


def test_the_http_page_has_every_path_method_and_schema() -> None:
    document = http_page.openapi_document()
    page = http_page.page(document)
    for path, item in document["paths"].items():
        for method in item:
            assert f"### `{method.upper()} {path}`" in page
    for name in document["components"]["schemas"]:
        assert f"### {name} {{ #schema-" in page
    assert "| `limit` | query | integer |  | `100` | (≥ 1; ≤ 1000) |" in page


def test_the_api_page_shows_every_public_module_of_the_participant_kit() -> None:
    import legato.participant

    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    shown = set(re.findall(r"^::: (legato[\w.]*)$", page, re.MULTILINE))
    public = {
        f"legato.participant.{module.name}"
        for module in pkgutil.iter_modules(legato.participant.__path__)
        if not module.name.startswith("_")
    }
    assert public - shown == set(), "add them to docs/reference/api.md"
    modes = {"legato.saga", "legato.tcc", "legato.xa", "legato.msg", "legato.workflow"}
    assert modes | {"legato", "legato.flow", "legato.coordinator", "legato.settings"} <= shown
