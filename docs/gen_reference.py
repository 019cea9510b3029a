"""Generate the reference pages of the documentation from the code itself.

The pages are built from what the program says about itself, so they cannot drift from it:

- ``reference/actions.md``: every registered action (``dr actions --output json``);
- ``reference/cli.md``: the help of every ``dr`` command (the typer application);
- ``reference/runbook-schema.md``: the JSON Schema of runbooks and regions (``dr schema``);
- ``reference/errors.md``: the error taxonomy (``dr_engine.errors``);
- ``reference/python-api.md``: the curated public API (``dr_engine.__all__``).

Two ways to run it:

- as an mkdocs hook (``hooks:`` in ``mkdocs.yml``): :func:`on_files` adds the pages to the
  build in memory, so nothing generated is ever committed or left stale in ``docs/``;
- as a script, ``python docs/gen_reference.py OUT_DIR``, which writes the pages to ``OUT_DIR``
  to read them without building the site.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer.core
import typer.main
from typer.testing import CliRunner

#: Width of the generated command help: wide enough for option tables, stable whatever the
#: terminal of whoever builds the docs.
HELP_WIDTH = 100


def _dr(*args: str) -> Any:
    """Run ``dr ARGS`` in this process and return its JSON output (the CLI's data contract)."""
    from dr_engine.cli import build_app

    result = CliRunner().invoke(build_app(), list(args))
    if result.exit_code != 0:
        raise RuntimeError(f"`dr {' '.join(args)}` exited {result.exit_code}: {result.output}")
    return json.loads(result.stdout)


def _cell(text: object) -> str:
    """Text safe inside one Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _param_type(prop: dict[str, Any]) -> str:
    """A parameter's type as a person reads it, from its JSON Schema."""
    if "enum" in prop:
        return " \\| ".join(json.dumps(v) for v in prop["enum"])
    if prop.get("format") == "password":  # pydantic's SecretStr: takes a secret reference
        return "secret"
    options = prop.get("anyOf")
    if options and "type" not in prop:
        return " \\| ".join(_param_type(o) if "$ref" not in o else str(o["$ref"]).rsplit("/", 1)[-1]
                            for o in options)
    if "(ms|s|m|h|d)" in str(prop.get("pattern", "")):
        return "duration"
    kind = str(prop.get("type") or "object")
    if kind == "array" and isinstance(prop.get("items"), dict):
        return f"list[{_param_type(prop['items'])}]"
    return kind


def actions_page() -> str:
    """Every registered action: capability, parameters, permissions, drill default, example."""
    infos: list[dict[str, Any]] = _dr("actions", "--output", "json")
    lines = ["# Actions", "",
             "Generated from the action registry (`dr actions --output json`): what each action does,",
             "its capability (which the planner's safety invariants read), the parameters of its",
             "`with:` block, the IAM permissions it needs and an example step.", "",
             "| action | capability | summary |", "|---|---|---|"]
    lines += [f"| [`{i['name']}`](#{_anchor(i['name'])}) | `{i['capability']}` | {_cell(i['summary'])} |"
              for i in infos]
    for info in infos:
        lines += ["", f"## {info['name']} {{#{_anchor(info['name'])}}}", "", info["description"], "",
                  f"- capability: `{info['capability']}`",
                  f"- safety-critical: {'yes' if info['safety_critical'] else 'no'}",
                  f"- in a drill: `{info['drill_default']}`",
                  "- permissions: " + (", ".join(f"`{p}`" for p in info["permissions"]) or "none"), ""]
        schema = info["params"]
        required = set(schema.get("required", []))
        props: dict[str, dict[str, Any]] = schema.get("properties", {})
        if props:
            lines += ["| param | type | default | description |", "|---|---|---|---|"]
            for key, prop in props.items():
                default = "required" if key in required else (
                    f"`{json.dumps(prop['default'])}`" if "default" in prop else "optional")
                lines.append(f"| `{key}` | {_param_type(prop)} | {default} | {_cell(prop.get('description', ''))} |")
        else:
            lines.append("No parameters.")
        lines += ["", "```yaml", info["example"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    """A stable heading id for an action or command name (dots and spaces become dashes)."""
    return name.replace(".", "-").replace("_", "-").replace(" ", "-")


def _context(command: Any, name: str, parent: Any = None) -> Any:
    """A click context for ``command``, of the click that typer uses (typer may vendor its own)."""
    return command.context_class(command, info_name=name, parent=parent,
                                 terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH)


def _commands(group: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """Every command of the app, depth first, in the order ``dr --help`` lists them."""
    yield group, ctx
    if isinstance(group, typer.core.TyperGroup):
        for name in group.list_commands(ctx):
            sub = group.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _commands(sub, _context(sub, name, ctx))


def cli_page() -> str:
    """The help of every ``dr`` command, as ``dr COMMAND --help`` prints it."""
    from dr_engine.cli import build_app

    root = typer.main.get_command(build_app())
    lines = ["# CLI", "",
             "Generated from the `dr` application: the help of every command, as `dr COMMAND --help`",
             "prints it. Exit codes everywhere: `0` success, `1` the operation failed, `2` usage or",
             "validation error; `--debug` (before the command) shows tracebacks.", ""]
    for command, sub_ctx in _commands(root, _context(root, "dr")):
        path = sub_ctx.command_path
        lines += [f"## `{path}` {{#{_anchor(path)}}}", "", "```text", command.get_help(sub_ctx).rstrip(), "```", ""]
    return "\n".join(lines)


def _schema_section(title: str, schema: dict[str, Any]) -> list[str]:
    """A table of the top-level keys of a JSON Schema, then the whole schema."""
    required = set(schema.get("required", []))
    lines = [f"## {title}", "", "| key | type | default | description |", "|---|---|---|---|"]
    for key, prop in schema.get("properties", {}).items():
        default = "required" if key in required else (
            f"`{json.dumps(prop['default'])}`" if "default" in prop else "optional")
        lines.append(f"| `{key}` | {_param_type(prop)} | {default} | {_cell(prop.get('description', ''))} |")
    lines += ["", '??? note "The whole schema (JSON)"', "", "    ```json"]
    lines += ["    " + line for line in json.dumps(schema, indent=2).splitlines()]
    lines += ["    ```", ""]
    return lines


def schema_page() -> str:
    """The JSON Schema (draft 2020-12) of runbooks and regions, as ``dr schema`` prints it."""
    lines = ["# Runbook schema", "",
             "Generated from the configuration models (`dr schema`, `dr schema --kind region`). The",
             "schema checks structure and types; `dr validate` also checks regions, actions, parameters,",
             "references and the safety invariants. See [Runbooks and regions](../concepts/runbooks-and-regions.md)",
             "for what each key means.", ""]
    lines += _schema_section("Runbook", _dr("schema"))
    lines += _schema_section("Region", _dr("schema", "--kind", "region"))
    return "\n".join(lines)


def errors_page() -> str:
    """The error taxonomy: the tree drawn in ``dr_engine.errors`` and each class's docstring."""
    from dr_engine import errors

    lines = ["# Errors", "", "Generated from `dr_engine.errors`.", "", inspect.cleandoc(errors.__doc__ or ""), ""]

    def walk(cls: type[BaseException]) -> Iterator[type[BaseException]]:
        yield cls
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                yield from walk(sub)

    for cls in walk(errors.DrError):
        lines += [f"## `{cls.__name__}`", ""]
        bases = ", ".join(f"`{b.__name__}`" for b in cls.__bases__)
        lines += [f"Subclass of {bases}. Exit code {getattr(cls, 'exit_code', 1)}.", ""]
        lines += [inspect.cleandoc(cls.__doc__ or "(no description)"), ""]
    return "\n".join(lines)


def _public_names() -> list[str]:
    """The names of the curated public API, from ``dr_engine.__all__``."""
    import dr_engine

    return list(getattr(dr_engine, "__all__", ()))


def python_api_page() -> str:
    """Signature and docstring of every name in ``dr_engine.__all__``."""
    import dr_engine

    names = _public_names()
    lines = ["# Python API", "",
             "Generated from `dr_engine.__all__`, the curated public API: what a program may import from",
             "`dr_engine` and rely on. See [Execution](../concepts/execution.md#using-the-engine-from-python)",
             "for a worked example.", ""]
    if not names:
        lines += ["`dr_engine` does not declare `__all__` yet: there is no curated public API.", ""]
    for name in names:
        obj = getattr(dr_engine, name)
        lines += [f"## `{name}`", ""]
        signature = _signature(name, obj)
        if signature:
            lines += ["```python", signature, "```", ""]
        lines += [inspect.cleandoc(inspect.getdoc(obj) or "(no description)") if not isinstance(obj, str | int)
                  else f"`{obj!r}`", ""]
    return "\n".join(lines)


def _signature(name: str, obj: object) -> str:
    """``name(params)`` of a function or class, or empty when it has none."""
    if not callable(obj):
        return ""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # builtins and some C types have no signature
        return ""
    kind = "class " if inspect.isclass(obj) else ""
    return f"{kind}{name}{sig}"


#: Page path (inside the docs) -> the function that writes it.
PAGES: dict[str, Callable[[], str]] = {
    "reference/actions.md": actions_page,
    "reference/cli.md": cli_page,
    "reference/runbook-schema.md": schema_page,
    "reference/errors.md": errors_page,
    "reference/python-api.md": python_api_page,
}


def generate() -> dict[str, str]:
    """Every reference page: path inside the docs -> Markdown."""
    return {path: build() for path, build in PAGES.items()}


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated reference pages to the build (in memory only)."""
    from mkdocs.structure.files import File

    for path, content in generate().items():
        files.append(File.generated(config, path, content=content))
    return files


def main(argv: list[str]) -> int:
    """Write the reference pages under ``argv[0]`` (default ``.dr/reference``)."""
    out = Path(argv[0] if argv else ".dr/reference")
    for path, content in generate().items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
