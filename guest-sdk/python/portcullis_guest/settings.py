"""Settings: a JSON document parsed into a dataclass, with errors that name the setting.

A policy declares its settings as a dataclass and the SDK parses the document the host
passes to `init` (and, on every call, through the `settings` import) into it:

    @dataclass
    class Settings:
        approver_group: str                      # required
        ttl_seconds: U32 = 900                   # optional, a u32 like the Rust policy's
        hosts: List[str] = field(default_factory=list)
        mask: Optional[str] = None               # Optional fields default to None

The rules are those of the Rust SDK (serde with `deny_unknown_fields`), and so are the
messages:

- an unknown key is refused (`unknown field `approvers`, expected one of ...`), so a misspelt
  setting fails at load instead of being ignored;
- a field without a default is required (`missing field `approver_group``), except
  `Optional[...]` fields, which default to `None`;
- types are checked exactly: `bool` is not an `int`, `1.0` is not an `int`, an `int` is
  accepted where a `float` is expected; `U8`...`U64`, `I8`...`I64` bound integers (a plain
  `int` is an `I64`);
- `List[T]`, `Dict[str, T]`, `Optional[T]`, `Literal["a", "b"]`, nested dataclasses and `Any`
  are understood; errors inside them name the path, e.g. `rules[1].mode`;
- a blank document or `null` gives every field its default (required fields their type's
  empty value: `""`, `0`, `False`, `[]`), and a policy whose `Settings` is `None` accepts
  only `{}`, `null` or nothing.

Checks that types cannot express go in the policy's `validate`, which raises
`SettingsError(setting, message)`.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

try:  # Python 3.8+
    from typing import Annotated, Literal, get_args, get_origin
except ImportError:  # pragma: no cover
    raise

from ._wit import types


class SettingsError(Exception):
    """A setting the policy refuses: `setting` is its name or path (`rules[2].path`; empty
    for the document as a whole), `message` what is wrong and what is expected."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}" if setting else message)
        self.setting = setting
        self.message = message

    def to_wit(self) -> "types.SettingsError":
        """The generated WIT record."""
        return types.SettingsError(self.setting, self.message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SettingsError):
            return NotImplemented
        return (self.setting, self.message) == (other.setting, other.message)

    def __hash__(self) -> int:
        return hash((self.setting, self.message))

    def __repr__(self) -> str:
        return f"SettingsError({self.setting!r}, {self.message!r})"


class IntRange:
    """Bounds for an integer setting; used through the `U8`...`I64` aliases."""

    def __init__(self, name: str, low: int, high: int) -> None:
        self.name, self.low, self.high = name, low, high

    def __repr__(self) -> str:
        return f"IntRange({self.name})"


U8 = Annotated[int, IntRange("u8", 0, 2**8 - 1)]
U16 = Annotated[int, IntRange("u16", 0, 2**16 - 1)]
U32 = Annotated[int, IntRange("u32", 0, 2**32 - 1)]
U64 = Annotated[int, IntRange("u64", 0, 2**64 - 1)]
I8 = Annotated[int, IntRange("i8", -(2**7), 2**7 - 1)]
I16 = Annotated[int, IntRange("i16", -(2**15), 2**15 - 1)]
I32 = Annotated[int, IntRange("i32", -(2**31), 2**31 - 1)]
I64 = Annotated[int, IntRange("i64", -(2**63), 2**63 - 1)]
_PLAIN_INT = IntRange("i64", -(2**63), 2**63 - 1)

Path = Tuple[Union[str, int], ...]


def format_path(path: Path) -> str:
    """A path the way settings are named in errors: `rules[2].path`."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out


class _Object(dict):
    """A JSON object that remembers the keys it had more than once."""

    duplicates: List[str]


def _object_pairs(pairs: List[Tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj and key not in obj.duplicates:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _unexpected(value: Any) -> str:
    """How serde describes a JSON value that has the wrong type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f"string {json.dumps(value, ensure_ascii=False)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _quote_list(names: Sequence[str]) -> str:
    quoted = [f"`{name}`" for name in names]
    if not quoted:
        return ""
    if len(quoted) == 1:
        return quoted[0]
    if len(quoted) == 2:
        return f"{quoted[0]} or {quoted[1]}"
    return "one of " + ", ".join(quoted)


def _strip_annotated(tp: Any) -> Tuple[Any, List[Any]]:
    if get_origin(tp) is Annotated:
        args = get_args(tp)
        return args[0], list(args[1:])
    return tp, []


def _optional_inner(tp: Any) -> Optional[Any]:
    """`T` for `Optional[T]`, else `None`."""
    if get_origin(tp) is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return args[0]
    return None


def _expected(tp: Any) -> str:
    """How serde names what it expected."""
    base, extras = _strip_annotated(tp)
    inner = _optional_inner(base)
    if inner is not None:
        return _expected(inner)
    for extra in extras:
        if isinstance(extra, IntRange):
            return extra.name
    if base is str:
        return "a string"
    if base is bool:
        return "a boolean"
    if base is int:
        return "i64"
    if base is float:
        return "f64"
    origin = get_origin(base)
    if base is list or origin in (list, List):
        return "a sequence"
    if base is dict or origin in (dict, Dict):
        return "a map"
    if dataclasses.is_dataclass(base):
        return f"struct {base.__name__}"
    return "a value"


# Resolved type hints by dataclass. `typing.get_type_hints` evaluates every annotation that
# is a string (all of them under `from __future__ import annotations`), which is the larger
# part of parsing a settings document; `prepare` fills this at build time (componentize-py
# pre-initialises the component, so the cache is part of its snapshot) and every call after
# that only looks it up.
_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(cls: type) -> Dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, include_extras=True)
    return hints


def prepare(cls: Any) -> None:
    """Resolves the type hints of `cls` and of the dataclasses inside it once, so that
    parsing does not (`export_policy` calls it at build time)."""
    stack = [cls]
    while stack:
        tp, _ = _strip_annotated(stack.pop())
        inner = _optional_inner(tp)
        if inner is not None:
            stack.append(inner)
            continue
        stack.extend(get_args(tp))
        if dataclasses.is_dataclass(tp) and isinstance(tp, type) and tp not in _HINTS:
            stack.extend(_hints(tp).values())


def _convert(value: Any, tp: Any, path: Path) -> Any:
    def wrong() -> SettingsError:
        return SettingsError(
            format_path(path), f"invalid type: {_unexpected(value)}, expected {_expected(tp)}"
        )

    base, extras = _strip_annotated(tp)
    if base is Any or base is object:
        return value
    inner = _optional_inner(base)
    if inner is not None:
        return None if value is None else _convert(value, inner, path)
    origin = get_origin(base)
    if origin is Literal:
        choices = get_args(base)
        if value in choices and type(value) in {type(c) for c in choices}:
            return value
        if isinstance(value, str):
            return_msg = f"unknown variant `{value}`, expected {_quote_list([str(c) for c in choices])}"
            raise SettingsError(format_path(path), return_msg)
        raise SettingsError(
            format_path(path),
            f"invalid type: {_unexpected(value)}, expected {_quote_list([str(c) for c in choices])}",
        )
    if base is str:
        if not isinstance(value, str):
            raise wrong()
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise wrong()
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        bounds = next((e for e in extras if isinstance(e, IntRange)), _PLAIN_INT)
        if not bounds.low <= value <= bounds.high:
            raise SettingsError(
                format_path(path), f"invalid value: integer `{value}`, expected {bounds.name}"
            )
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        return float(value)
    if base is list or origin in (list, List):
        if not isinstance(value, list):
            raise wrong()
        (item,) = get_args(base) or (Any,)
        return [_convert(v, item, path + (i,)) for i, v in enumerate(value)]
    if base is dict or origin in (dict, Dict):
        if not isinstance(value, dict):
            raise wrong()
        args = get_args(base)
        item = args[1] if len(args) == 2 else Any
        _refuse_duplicates(value, path)
        return {k: _convert(v, item, path + (k,)) for k, v in value.items()}
    if dataclasses.is_dataclass(base):
        if not isinstance(value, dict):
            raise wrong()
        return _dataclass(value, base, path)
    raise TypeError(f"settings field {format_path(path) or '(document)'}: unsupported type {tp!r}")


def _refuse_duplicates(obj: dict, path: Path) -> None:
    duplicates = getattr(obj, "duplicates", None)
    if duplicates:
        raise SettingsError(format_path(path + (duplicates[0],)), f"duplicate field `{duplicates[0]}`")


def _dataclass(obj: dict, cls: type, path: Path) -> Any:
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    # serde reports problems in document order: walk the keys as they come.
    _refuse_duplicates(obj, path)
    values: Dict[str, Any] = {}
    for key, value in obj.items():
        if key not in names:
            expected = _quote_list(names)
            message = f"unknown field `{key}`, " + (
                f"expected {expected}" if expected else "there are no fields"
            )
            raise SettingsError(format_path(path + (key,)), message)
        values[key] = _convert(value, hints[key], path + (key,))
    for f in fields:
        if f.name in values:
            continue
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        if has_default:
            continue
        if _optional_inner(_strip_annotated(hints[f.name])[0]) is not None:
            values[f.name] = None
            continue
        raise SettingsError(format_path(path + (f.name,)), f"missing field `{f.name}`")
    return cls(**values)


def _empty_value(tp: Any) -> Any:
    """What a required field holds in a default document (Rust's `Default`)."""
    base, _ = _strip_annotated(tp)
    if _optional_inner(base) is not None or base is Any:
        return None
    if get_origin(base) is Literal:
        return get_args(base)[0]
    if dataclasses.is_dataclass(base):
        return default_of(base)
    origin = get_origin(base)
    if base is list or origin in (list, List):
        return []
    if base is dict or origin in (dict, Dict):
        return {}
    if base in (str, bool, int, float):
        return base()
    raise TypeError(f"unsupported settings type {tp!r}")


def default_of(cls: Any) -> Any:
    """The settings a blank document or `null` stands for: every field's default, and the
    empty value of its type for a required field."""
    if cls is None:
        return None
    if not dataclasses.is_dataclass(cls):
        return _empty_value(cls)
    hints = _hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            values[f.name] = _empty_value(hints[f.name])
    return cls(**values)


def _refuse_constant(name: str) -> Any:
    raise SettingsError("", f"{name} is not JSON")


def _load(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise SettingsError("", f"{error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise SettingsError("", "recursion limit exceeded") from None


def parse(text: str, cls: Any) -> Any:
    """Parses a settings document into `cls` (a dataclass; `None` for no settings; or any
    type the module docstring lists). Raises `SettingsError`."""
    if not isinstance(text, str):
        raise TypeError("settings must be JSON text")
    trimmed = text.strip()
    if trimmed in ("", "null"):
        return default_of(cls)
    document = _load(text)
    if cls is None:
        if isinstance(document, dict) and not document:
            return None
        raise SettingsError("", f"invalid type: {_unexpected(document)}, expected unit")
    return _convert(document, cls, ())
