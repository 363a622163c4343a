"""The documentation stays whole: every page is in the nav, the generated references have
something to say for every setting and command, and the README points at pages that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import yaml

from service.cli import main
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _nav_pages(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_nav_pages(item) for item in nav))
    if isinstance(nav, dict):
        return set().union(*(_nav_pages(value) for value in nav.values()))
    return set()


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "hooks" not in p.parts}
    assert pages == nav, {"not in the nav": pages - nav, "missing": nav - pages}


def test_every_setting_says_what_it_does() -> None:
    # docs/reference/configuration.md is generated from these descriptions.
    silent = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not silent, f"settings without a description: {silent}"


def _commands(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        context = click.Context(command)
        found: list[tuple[str, click.Command]] = []
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            assert sub is not None
            found += _commands(sub, (*path, name))
        return found
    return [(" ".join(path), command)]


def test_every_command_and_option_has_help() -> None:
    # docs/reference/cli.md is generated from the commands' help.
    for name, command in _commands(main, ("upshift",)):
        assert command.help, f"{name} has no help text"
        for option in command.params:
            if isinstance(option, click.Option) and not option.hidden:
                assert option.help, f"{name} {option.opts[0]} has no help text"


def test_the_readme_and_the_pages_link_to_pages_that_exist() -> None:
    sources = [ROOT / "README.md", *DOCS.rglob("*.md")]
    for source in sources:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", source.read_text()):
            assert (source.parent / target).resolve().is_file(), f"{source.name} -> {target}"


def test_the_generated_references_render() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference", DOCS / "hooks" / "reference.py")
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    settings = reference.settings_markdown()
    for name in Settings.model_fields:
        assert f"`UPSHIFT_{name.upper()}`" in settings
    cli = reference.cli_markdown()
    for name, _ in _commands(main, ("upshift",)):
        assert f"### `{name}`" in cli
    api = reference.openapi_markdown()
    assert "### `POST /v1/accounts/{account_id}/sales-requests`" in api


def test_the_stripe_double_readme_names_every_module() -> None:
    fakes = ROOT / "tests" / "fakes"
    readme = (fakes / "README.md").read_text()
    modules = [p.name for p in fakes.glob("*.py") if p.name != "__init__.py"]
    missing = [name for name in modules if f"`{name}`" not in readme]
    assert not missing, f"tests/fakes/README.md does not describe {missing}"


def test_the_architecture_page_lists_every_module() -> None:
    page = (DOCS / "architecture.md").read_text()
    modules = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "service").rglob("*.py")
        if p.name != "__init__.py"
    )
    missing = [module for module in modules if f"`{module}`" not in page]
    assert not missing, f"docs/architecture.md does not list {missing}"
