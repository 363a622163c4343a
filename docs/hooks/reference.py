"""MkDocs hooks: the reference pages are generated from the code at build time, so they cannot
drift from it: settings from `service.settings.Settings`, commands from the click groups, the
HTTP API from `openapi/openapi.json`. After the build, any page that loads a script, a
stylesheet or a font from another host fails it: the docs must work offline."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import click
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[2]
MARKERS = {
    "<!-- upshift:settings -->": lambda: settings_markdown(),
    "<!-- upshift:cli -->": lambda: cli_markdown(),
    "<!-- upshift:openapi -->": lambda: openapi_markdown(),
}
# A resource from another host: <script src=http…>, <link … href=http…> (stylesheets, fonts),
# url(http…) in inline styles. Links to other sites (<a href>) are fine.
EXTERNAL_RESOURCE = re.compile(
    r"<script[^>]+src=\"https?://|<link[^>]+href=\"https?://|url\(['\"]?https?://", re.I
)


def on_page_markdown(markdown: str, **_: Any) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown


def on_post_build(config: Any, **_: Any) -> None:
    site = Path(config["site_dir"])
    offenders = [
        str(page.relative_to(site))
        for page in site.rglob("*.html")
        if EXTERNAL_RESOURCE.search(page.read_text(encoding="utf-8"))
    ]
    if offenders:
        raise SystemExit(f"pages load resources from another host: {', '.join(offenders)}")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_markdown() -> str:
    from service.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = json.dumps(field.default_factory())  # type: ignore[call-arg]
        elif field.default is PydanticUndefined or field.default is None:
            default = "unset"
        else:
            default = str(field.default)
        rows.append(
            f"| `{prefix}{name.upper()}` | `{_cell(default)}` | {_cell(field.description or '')} |"
        )
    return "\n".join(rows)


def cli_markdown() -> str:
    from service.cli import main

    sections: list[str] = []

    def visit(command: click.Command, path: list[str]) -> None:
        context = click.Context(command, info_name=" ".join(path))
        if isinstance(command, click.Group):
            for name in sorted(command.list_commands(context)):
                sub = command.get_command(context, name)
                if sub is not None and not sub.hidden:
                    visit(sub, [*path, name])
            return
        usage = command.collect_usage_pieces(context)
        lines = [f"### `{' '.join(path)}`", "", f"    {' '.join([*path, *usage])}", ""]
        lines += [inspect.cleandoc(command.help or ""), ""]
        options = [p for p in command.params if isinstance(p, click.Option)]
        if options:
            lines += ["| option | meaning |", "| --- | --- |"]
            for option in options:
                record = option.get_help_record(context)
                if record:
                    lines.append(f"| `{_cell(record[0])}` | {_cell(record[1])} |")
            lines.append("")
        sections.append("\n".join(lines))

    visit(main, ["upshift"])
    return "\n".join(sections)


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_schema_type(s) for s in schema["anyOf"])
    kind = schema.get("type", "object")
    if kind == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return str(kind)


def openapi_markdown() -> str:
    document = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    out: list[str] = [document["info"].get("description", ""), "", "## Operations", ""]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            out += [f"### `{method.upper()} {path}`", ""]
            if operation.get("summary"):
                out += [f"**{operation['summary']}**", ""]
            if operation.get("description"):
                out += [operation["description"], ""]
            parameters = operation.get("parameters", [])
            if parameters:
                out += [
                    "| parameter | in | type | required | meaning |",
                    "| --- | --- | --- | --- | --- |",
                ]
                for parameter in parameters:
                    out.append(
                        f"| `{parameter['name']}` | {parameter['in']} "
                        f"| {_schema_type(parameter.get('schema', {}))} "
                        f"| {'yes' if parameter.get('required') else 'no'} "
                        f"| {_cell(parameter.get('description', ''))} |"
                    )
                out.append("")
            body = operation.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                out += [f"Request body (`{media}`): {_schema_type(content.get('schema', {}))}", ""]
            out += ["| status | meaning | body |", "| --- | --- | --- |"]
            for status, response in operation.get("responses", {}).items():
                schemas = dict.fromkeys(
                    _schema_type(c["schema"])
                    for c in response.get("content", {}).values()
                    if "schema" in c
                )
                out.append(
                    f"| {status} | {_cell(response.get('description', ''))} "
                    f"| {' / '.join(schemas)} |"
                )
            out.append("")
    out += ["## Schemas", ""]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        out += [f"### {name}", "", schema.get("description", ""), ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", []))
            out += ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
            for field, spec in properties.items():
                out.append(
                    f"| `{field}` | {_schema_type(spec)} | {'yes' if field in required else 'no'} "
                    f"| {_cell(spec.get('description', ''))} |"
                )
            out.append("")
    return "\n".join(out)
