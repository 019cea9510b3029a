"""Safe YAML reading that remembers where every value came from.

PyYAML's node tree is turned into plain dicts/lists/scalars by hand so that:

- only the standard scalar/sequence/mapping tags are accepted (``!!python/object`` and any
  custom tag are refused, not constructed);
- duplicate mapping keys, merge keys and non-scalar keys are errors, not silent overwrites;
- aliases cannot expand without bound (billion laughs): nodes are counted as they are built;
- the 1-based line of every value is kept, keyed by its field path, for error messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dr_engine.config.gcpause import gc_paused
from dr_engine.errors import ConfigError, Problem

PathKey = tuple[str | int, ...]
LineMap = dict[PathKey, int]

MAX_BYTES = 16 * 1024 * 1024
MAX_NODES = 1_000_000
MAX_DEPTH = 64

_YAML = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_YAML}{t}" for t in ("str", "int", "float", "bool", "null")}
_TIMESTAMP = f"{_YAML}timestamp"
_constructor = SafeConstructor()
#: libyaml's parser when PyYAML was built with it: ~10x faster on large runbooks, and it caps
#: nesting itself (1,000 levels) before any recursion. Only its node tree is used: every value
#: is still built by _Builder below, so the safety rules are the same with either parser.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def format_path(path: PathKey) -> str:
    """``("steps", 2, "after", 0)`` -> ``steps[2].after[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_path(text: str) -> PathKey:
    """Inverse of :func:`format_path`: ``steps[2].after[0]`` -> ``("steps", 2, "after", 0)``."""
    parts: list[str | int] = []
    for chunk in text.replace("]", "").split("."):
        head, *indexes = chunk.split("[")
        if head:
            parts.append(head)
        parts.extend(int(i) for i in indexes if i.isdigit())
    return tuple(parts)


def line_for(lines: LineMap, path: PathKey) -> int | None:
    """The line of ``path`` or of its nearest ancestor that has one."""
    probe = tuple(path)
    while probe:
        if probe in lines:
            return lines[probe]
        probe = probe[:-1]
    return lines.get((), None)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: LineMap = {}
        self.count = 0

    def fail(self, node: Node, path: PathKey, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(Problem(self.file, node.start_mark.line + 1, format_path(path), message, hint))

    def build(self, node: Node, path: PathKey, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.fail(node, path, f"document too large (over {MAX_NODES:,} values, aliases included)",
                            "split it up; aliases that expand exponentially are refused")
        if depth > MAX_DEPTH:
            # Name only the first levels: the full path would be as unreadable as the document.
            shown = path[:4]
            raise self.fail(node, shown, f"nested deeper than {MAX_DEPTH} levels", "flatten the document")
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != f"{_YAML}seq":
                raise self.unsafe(node, path)
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self.mapping(node, path, depth)
        raise self.unsafe(node, path)  # pragma: no cover - composer yields only these three

    def unsafe(self, node: Node, path: PathKey) -> ConfigError:
        return self.fail(node, path, f"YAML tag {node.tag!r} is not allowed",
                         "runbooks are plain data: remove the tag (no !!python/... or custom tags)")

    def scalar(self, node: ScalarNode, path: PathKey) -> Any:
        if node.tag == _TIMESTAMP:
            return node.value  # keep dates as written; models parse them if they want them
        if node.tag not in _SCALAR_TAGS:
            raise self.unsafe(node, path)
        # Call the tag's constructor directly: construct_object() would cache every node in the
        # shared constructor forever (a leak in a long-running process).
        return _constructor.yaml_constructors[node.tag](_constructor, node)

    def mapping(self, node: MappingNode, path: PathKey, depth: int) -> dict[str, Any]:
        if node.tag != f"{_YAML}map":
            raise self.unsafe(node, path)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == f"{_YAML}merge":
                raise self.fail(key_node, path, "merge keys (<<) are not supported",
                                "write the keys out; runbooks should read plainly")
            if not isinstance(key_node, ScalarNode):
                raise self.fail(key_node, path, "mapping keys must be plain scalars",
                                "write a plain text key; `? [a, b]` style complex keys are not supported")
            key = self.scalar(key_node, path)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                first = self.lines.get((*path, key))
                raise self.fail(key_node, (*path, key), f"duplicate key '{key}' (first defined on line {first})",
                                "remove one of them; YAML would silently keep only the last")
            self.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*path, key), depth + 1)
        return out


def read_yaml(path: Path, display: str | None = None) -> tuple[Any, LineMap]:
    """Read one YAML document safely; return the data and its line map.

    Raises :class:`ConfigError` with file and line for unreadable, oversized, malformed,
    empty, multi-document, tagged or duplicate-key input.
    """
    file = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(Problem(file, None, "", f"file is {size:,} bytes; the limit is {MAX_BYTES:,}",
                                      "runbooks are small text files; is this the right file?"))
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(Problem(file, None, "", "file not found", "check the path")) from exc
    except IsADirectoryError as exc:
        raise ConfigError(Problem(file, None, "", "is a directory, not a YAML file")) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(Problem(file, None, "", "file is not UTF-8 text", "save it as UTF-8")) from exc
    except OSError as exc:
        raise ConfigError(Problem(file, None, "", f"cannot read file: {exc.strerror}")) from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse YAML text (see :func:`read_yaml`)."""
    # The node tree and the data built from it are large and acyclic: see dr_engine.config.gcpause.
    with gc_paused():
        return _parse_yaml(text, file)


def _parse_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        hint = "check indentation, colons and quotes around this line"
        if "single document" in what:
            hint = "one runbook or region per file: remove the second `---` document"
        elif line is not None and "\t" in (text.splitlines()[line - 1:line] or [""])[0]:
            hint = "YAML indents with spaces, not tabs"
        message = f"YAML syntax error: {what}"
        if "maximum nesting depth" in what:  # libyaml's own cap, far above ours
            message, hint = f"nested deeper than {MAX_DEPTH} levels", "flatten the document"
        raise ConfigError(Problem(file, line, "", message, hint)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(file, None, "", f"YAML error: {exc}")) from exc
    except RecursionError as exc:
        raise ConfigError(Problem(file, None, "", f"nested deeper than {MAX_DEPTH} levels")) from exc
    if root is None:
        raise ConfigError(Problem(file, None, "", "file is empty", "see `dr schema` or runbooks/ for an example"))
    builder = _Builder(file)
    try:
        data = builder.build(root, (), 0)
    except RecursionError as exc:
        raise ConfigError(Problem(file, None, "", f"nested deeper than {MAX_DEPTH} levels")) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(file, root.start_mark.line + 1, "", f"YAML error: {exc}")) from exc
    return data, builder.lines
