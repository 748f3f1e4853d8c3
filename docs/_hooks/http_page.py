"""The HTTP API reference page, written from the OpenAPI document of ``legato serve``.

Every path and method with its parameters, its body's schema and its answers, then
every schema the bodies name, as Markdown tables: the page reads offline and needs no
script. The document is the one ``/openapi.json`` serves, taken from the app itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

Schema = dict[str, Any]

_METHODS = ("get", "post", "put", "patch", "delete")
_BOUNDS = (
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minItems", "items ≥ {}"),
    ("maxItems", "items ≤ {}"),
    ("pattern", "matches `{}`"),
    ("format", "format {}"),
)


def openapi_document() -> Schema:
    """The OpenAPI document of ``legato serve``'s app, on a log that is never opened."""
    from legato.server import create_app

    # the app opens its log when it starts serving; describing it opens nothing
    return create_app("memory://").openapi()


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def _schema_anchor(name: str) -> str:
    return "schema-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _op_anchor(method: str, path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{method} {path}".lower()).strip("-")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: Schema) -> str:
    """A schema's type in a few words, schemas it names linked to their section."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{_schema_anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            kinds = [s for s in schema[key] if s.get("type") != "null"]
            text = " or ".join(type_of(s) for s in kinds) or "null"
            if len(kinds) < len(schema[key]):
                text += " or null"
            return text
    if "allOf" in schema:
        return " and ".join(type_of(s) for s in schema["allOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    kind = schema.get("type")
    if kind == "array":
        return f"array of {type_of(schema.get('items', {}))}"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict) and values:
            return f"object of {type_of(values)}"
        return "object"
    if isinstance(kind, list):
        return " or ".join(kind)
    return str(kind) if kind else "any JSON"


def _bounds(schema: Schema) -> list[str]:
    found = [text.format(schema[key]) for key, text in _BOUNDS if key in schema]
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []):
            found += _bounds(option)
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        found += [f"each {b}" for b in _bounds(schema["items"])]
    return found


def _what(schema: Schema, description: str | None = None) -> str:
    parts = [description or schema.get("description") or ""]
    bounds = _bounds(schema)
    if bounds:
        parts.append("(" + "; ".join(bounds) + ")")
    return _cell(" ".join(p for p in parts if p))


def _default(schema: Schema) -> str:
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def _parameters(operation: Schema) -> list[str]:
    params = operation.get("parameters", [])
    if not params:
        return []
    lines = ["**Parameters**", "", "| name | in | type | required | default | what |"]
    lines.append("|---|---|---|---|---|---|")
    for p in params:
        schema = p.get("schema", {})
        required = "yes" if p.get("required") else ""
        what = _what(schema, p.get("description"))
        lines.append(
            f"| `{p['name']}` | {p['in']} | {type_of(schema)} | {required} "
            f"| {_default(schema)} | {what} |"
        )
    return [*lines, ""]


def _body(operation: Schema) -> list[str]:
    body = operation.get("requestBody")
    if not body:
        return []
    lines = ["**Body**" + (" (required)" if body.get("required") else ""), ""]
    for media, content in body.get("content", {}).items():
        lines.append(f"`{media}`: {type_of(content.get('schema', {}))}")
    return [*lines, ""]


def _responses(operation: Schema) -> list[str]:
    responses = operation.get("responses", {})
    if not responses:
        return []
    lines = ["**Answers**", "", "| status | what | body |", "|---|---|---|"]
    for status, answer in responses.items():
        bodies = []
        for media, content in answer.get("content", {}).items():
            schema = content.get("schema") or {}
            bodies.append(f"`{media}`: {type_of(schema)}" if schema else f"`{media}`")
        lines.append(f"| {status} | {_cell(answer.get('description', ''))} | {', '.join(bodies)} |")
    return [*lines, ""]


def _operations(document: Schema) -> dict[str, list[tuple[str, str, Schema]]]:
    by_tag: dict[str, list[tuple[str, str, Schema]]] = {}
    for path, item in document.get("paths", {}).items():
        for method in _METHODS:
            if method in item:
                operation = item[method]
                tag = (operation.get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).append((method, path, operation))
    return by_tag


def _schema_section(name: str, schema: Schema) -> list[str]:
    lines = [f"### {name} {{ #{_schema_anchor(name)} }}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    properties = schema.get("properties")
    if properties:
        required = set(schema.get("required", []))
        lines += ["| field | type | required | default | what |", "|---|---|---|---|---|"]
        for field, sub in properties.items():
            need = "yes" if field in required else ""
            lines.append(
                f"| `{field}` | {type_of(sub)} | {need} | {_default(sub)} | {_what(sub)} |"
            )
        lines.append("")
        if schema.get("additionalProperties") is False:
            lines += ["Any other field is refused.", ""]
    else:
        lines += [f"{type_of(schema)}.", ""]
    return lines


def page(document: Schema) -> str:
    """The whole page, in Markdown."""
    info = document.get("info", {})
    lines = [
        "# HTTP API reference",
        "",
        f"{info.get('title', 'The API')} {info.get('version', '')}: {info.get('description', '')}",
        "",
        "Generated from the OpenAPI document of `legato serve`'s app when the site is",
        "built; a running server serves the same document at `/openapi.json`, and",
        "`/docs` shows it.",
        "",
    ]
    by_tag = _operations(document)
    for tag, operations in by_tag.items():
        lines += [f"## {tag[:1].upper() + tag[1:]}", ""]
        for method, path, operation in operations:
            anchor = _op_anchor(method, path)
            lines += [f"### `{method.upper()} {path}` {{ #{anchor} }}", ""]
            if operation.get("summary"):
                lines += [_cell(operation["summary"]) + ".", ""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            lines += _parameters(operation)
            lines += _body(operation)
            lines += _responses(operation)
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        lines += ["## Schemas", ""]
        for name, schema in schemas.items():
            lines += _schema_section(name, schema)
    return "\n".join(lines)
