"""Load user-written YAML safely, remembering the line of every value.

Scripts, profiles and styles are written by people, so every complaint about them must name the
line and the field. This module reads the file (size and UTF-8 checked), refuses YAML features a
script never needs (aliases, which make "billion laughs" bombs possible; duplicate keys, which
YAML silently collapses), and turns pydantic's validation errors into `Problem`s with lines and
close-match suggestions for unknown keys.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from stages.errors import InputFileError, Problem

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 20_000
PLAIN_TAGS = {f"tag:yaml.org,2002:{name}" for name in
              ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass
class LocatedYaml:
    """Plain Python data from a YAML file plus the line (1-based) of every key and item."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


def format_loc(loc: Loc) -> str:
    """('scenes', 2, 'narration') -> 'scenes[2].narration'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_text(path: Path, error: type[InputFileError]) -> str:
    """Read a user file as UTF-8 text, refusing oversized and non-UTF-8 files with a location."""
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            # a named pipe or a device (/dev/zero) would block or never end
            raise error(path, [Problem(None, "", "is not a regular file")])
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_FILE_BYTES:
            raise error(path, [Problem(None, "", f"is {size:,} bytes; the limit is "
                                                 f"{MAX_FILE_BYTES:,} bytes")])
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(path, [Problem(None, "", "file not found")]) from None
    except IsADirectoryError:
        raise error(path, [Problem(None, "", "is a folder, expected a YAML file")]) from None
    except OSError as exc:
        raise error(path, [Problem(None, "", f"cannot be read: {exc.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise error(path, [Problem(None, "", f"is {len(raw):,} bytes; the limit is "
                                             f"{MAX_FILE_BYTES:,} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise error(path, [Problem(line, "", f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} "
                                             "at this line); save the file as UTF-8")]) from None
    return text.removeprefix("\ufeff")


def load_yaml(path: Path, error: type[InputFileError]) -> LocatedYaml:
    """Parse a YAML file into plain data with line numbers, or raise `error` with locations."""
    text = read_text(path, error)
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:   # a character YAML does not allow (NUL, ESC...)
        line = text[: exc.position].count("\n") + 1
        raise error(path, [Problem(line, "", f"contains the character U+{exc.character:04X}, "
                                             "which YAML does not allow; remove it")]) from None
    try:
        _refuse_aliases(text, path, error)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = exc.problem or exc.context or "invalid YAML"
        raise error(path, [Problem(line, "", f"is not valid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise error(path, [Problem(None, "", f"is not valid YAML: {exc}")]) from None
    except RecursionError:
        raise error(path, [_too_deep()]) from None
    finally:
        loader.dispose()
    located = LocatedYaml(path=path, data=None)
    if root is None:
        located.data = None
        return located
    builder = _Builder(loader, located, error)
    try:
        located.data = builder.build(root, ())
    except RecursionError:
        raise error(path, [_too_deep()]) from None
    return located


def _too_deep() -> Problem:
    return Problem(None, "", "is nested too deeply (lists or mappings inside each other "
                             "hundreds of levels down); a script is a few levels deep")


def _refuse_aliases(text: str, path: Path, error: type[InputFileError]) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise error(path, [Problem(event.start_mark.line + 1, "",
                                       f"YAML aliases (*{event.anchor}) are not allowed; "
                                       "write the value out in full")])


class _Builder:
    """Turns composed YAML nodes into dicts, lists and scalars, recording lines."""

    def __init__(self, loader: yaml.SafeLoader, located: LocatedYaml,
                 error: type[InputFileError]):
        self.loader, self.located, self.error = loader, located, error
        self.count = 0

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise self.error(self.located.path, [Problem(node.start_mark.line + 1, "",
                             f"has more than {MAX_NODES:,} values; is this really a script?")])
        self.located.lines.setdefault(loc, node.start_mark.line + 1)
        if node.tag not in PLAIN_TAGS:
            raise self.error(self.located.path, [Problem(node.start_mark.line + 1,
                             format_loc(loc), f"the YAML tag {node.tag!r} is not allowed; "
                             "write a plain value")])
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            merge = key_node.tag == "tag:yaml.org,2002:merge"
            if not isinstance(key_node, yaml.ScalarNode) or merge:
                raise self.error(self.located.path, [Problem(line, format_loc(loc),
                                 "keys must be plain names; merge keys (<<) are not allowed")])
            key = str(self.loader.construct_object(key_node))
            if key in result:
                raise self.error(self.located.path, [Problem(line, format_loc((*loc, key)),
                                 "appears twice in the same block; keep one")])
            self.located.lines[(*loc, key)] = line   # the key's line, not its value's
            result[key] = self.build(value_node, (*loc, key))
        return result


def validate(model: type[M], located: LocatedYaml, error: type[InputFileError]) -> M:
    """Validate located data against a pydantic model; all problems at once, with lines."""
    if not isinstance(located.data, dict):
        raise error(located.path, [Problem(1, "", "expected a YAML mapping of keys to values")])
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        raise error(located.path, problems_from(exc, model, located)) from None


def problems_from(exc: ValidationError, model: type[BaseModel], located: LocatedYaml,
                  prefix: Loc = ()) -> list[Problem]:
    """Translate pydantic errors into user-facing problems (file line, field path, expectation)."""
    problems = []
    data = _at(located.data, prefix)
    for err in exc.errors(include_url=False):
        relative = _user_loc(err["loc"], data)
        loc = (*prefix, *relative)
        problems.append(Problem(located.line(loc), format_loc(loc),
                                _message(err, model, relative)))
    return problems


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _user_loc(loc: tuple, data: Any) -> Loc:
    """pydantic's error location without the member names it adds for unions; a part that is
    a key of the user's own data is kept whatever it looks like (a key may be named '[')."""
    kept: list[str | int] = []
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_dict or in_list:
            kept.append(part)
            data = data[part]
        elif not _is_union_tag(part):
            kept.append(part)
            data = None
    return tuple(kept)


def _is_union_tag(part: Any) -> bool:
    # pydantic adds the member type's name to the loc of union errors ('str', 'function-after')
    return isinstance(part, str) and (part in {"str", "int", "float", "bool", "list", "dict"}
                                      or "[" in part or part.startswith("function-"))


def _message(err: dict[str, Any], model: type[BaseModel], loc: Loc) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden" and loc:
        known = _known_keys(model, loc[:-1])
        close = get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key{hint} Expected one of: {', '.join(known)}"
    if kind == "value_error":
        return str(err["ctx"]["error"])
    if kind == "missing":
        return "is required but missing"
    if kind.endswith("_type") or kind in {"string_type", "model_type", "list_type", "dict_type"}:
        return f"{err['msg'].lower()}; got {_describe(value)}"
    if kind in ("string_too_long", "too_long"):
        unit = "characters" if isinstance(value, str) else "items"
        size = len(value) if hasattr(value, "__len__") else "too many"
        return f"has {size} {unit}; the limit is {err['ctx']['max_length']} {unit}"
    if kind in ("too_short",):
        return f"needs at least {err['ctx']['min_length']} item(s)"
    return err["msg"][0].lower() + err["msg"][1:] if err.get("msg") else kind


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _known_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The field names of the model found at `loc` under `model` (walking lists and dicts)."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if isinstance(part, str) and part in annotation.model_fields:
                annotation = annotation.model_fields[part].annotation
                continue
            return []
        args = typing.get_args(annotation)
        origin = typing.get_origin(annotation)
        if origin in (list, tuple) and args:
            annotation = args[0]
        elif origin is dict and len(args) == 2:
            annotation = args[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] / Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
