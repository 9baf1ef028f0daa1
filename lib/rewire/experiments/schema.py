"""Typed experiment configs: one schema per experiment, the only one.

Every experiment declares its parameters once, as a frozen dataclass deriving from
:class:`ExperimentConfig`. A ``params.yaml`` block, a notebook's parameters cell and the command
line (``python -m rewire run <experiment>``) are all checked against it, values included, before
any work::

    @dataclass(frozen=True)
    class Config(ExperimentConfig):
        epochs: int = field(default=1, metadata=check(at_least=1, example=160))
        keep: float = field(default=0.05, metadata=check(above=0, at_most=1, example=0.01))
        method: str = field(default="dnw", metadata=check(choices=("rg", "dnw")))
        rows: list[Row] = ()          # nested configs are checked field by field

    config = Config.from_values(block, where="params.yaml 'cpu.tiny_graphs'")

A bad value raises :class:`ConfigError` naming the field's path, the value, the valid range and an
example, e.g. ``params.yaml 'cpu.robust_binary' rows[2].keep: 1.5 is not in (0, 1]; e.g. keep: 0.01``.
Types come from the annotations (``int``, ``float``, ``str``, ``bool``, ``list[T]``,
``dict[str, T]``, ``T | None``, ``Literal[...]`` and nested ``ExperimentConfig`` classes); ranges
and choices from :func:`check`; rules across fields from :meth:`ExperimentConfig.validate`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["ConfigError", "ExperimentConfig", "check", "config_fields"]

C = TypeVar("C", bound="ExperimentConfig")


class ConfigError(ValueError):
    """A value does not fit its experiment's schema. The message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class _Check:
    above: float | None = None  # strictly greater
    at_least: float | None = None
    below: float | None = None  # strictly smaller
    at_most: float | None = None
    choices: tuple[Any, ...] | None = None
    each: bool = True  # for list fields: the bounds and choices apply to each item
    example: Any = None
    unit: str = ""  # e.g. "/255": said in the message

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        low = (
            f"({self.above:g}" if self.above is not None else f"[{self.at_least:g}" if self.at_least is not None else ""
        )
        high = (
            f"{self.below:g})" if self.below is not None else f"{self.at_most:g}]" if self.at_most is not None else ""
        )
        if low and high:
            return f"in {low}, {high}{self.unit and ' ' + self.unit}"
        if low:
            return (f"> {self.above:g}" if self.above is not None else f">= {self.at_least:g}") + (
                f" {self.unit}" if self.unit else ""
            )
        if high:
            return (f"< {self.below:g}" if self.below is not None else f"<= {self.at_most:g}") + (
                f" {self.unit}" if self.unit else ""
            )
        return "any value"

    def accepts(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return True
        return not (
            (self.above is not None and not value > self.above)
            or (self.at_least is not None and not value >= self.at_least)
            or (self.below is not None and not value < self.below)
            or (self.at_most is not None and not value <= self.at_most)
        )


def check(
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    choices: Sequence[Any] | None = None,
    example: Any = None,
    unit: str = "",
    help: str = "",
) -> dict[str, Any]:
    """Field metadata: the valid range or choices, an example value and a one-line help."""
    return {
        "check": _Check(
            above, at_least, below, at_most, tuple(choices) if choices is not None else None, True, example, unit
        ),
        "help": help,
    }


def config_fields(cls: type[ExperimentConfig]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


class ExperimentConfig:
    """Base of every experiment's config dataclass (decorate subclasses with ``@dataclass(frozen=True)``).

    Class attributes a subclass may set:

    * ``IGNORED``: keys accepted and dropped (e.g. the pipeline's ``out_dir``), not fields.
    """

    IGNORED: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_values(cls: type[C], values: Mapping[str, Any] | None, where: str = "config") -> C:
        """Build from a mapping (a ``params.yaml`` block), checking every key, type and range.

        Unknown keys, wrong types and values out of range are all collected into one
        :class:`ConfigError`; nothing is built when any is wrong.
        """
        problems: list[str] = []
        config = cls._build(values or {}, where, problems)
        if problems:
            raise ConfigError(_join(where, problems))
        try:
            config.validate()
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
        return config

    @classmethod
    def _build(cls: type[C], values: Mapping[str, Any], path: str, problems: list[str]) -> C:
        if not isinstance(values, Mapping):
            problems.append(f"{path}: must be a mapping of {cls.__name__} fields, got {type(values).__name__}")
            return None  # type: ignore[return-value]
        fields = config_fields(cls)
        hints = get_type_hints(cls, vars(typing) | vars(__import__(cls.__module__, fromlist=["_"])))
        unknown = [k for k in values if k not in fields and k not in cls.IGNORED]
        for key in unknown:
            close = _close_match(key, list(fields))
            problems.append(
                f"'{key}' is not a field of {cls.__name__}"
                + (f" (did you mean '{close}'?)" if close else f"; known: {', '.join(sorted(fields))}")
            )
        kwargs = {}
        for name, field in fields.items():
            if name not in values:
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    problems.append(f"'{name}' is required" + _example(field, name))
                continue
            n_before = len(problems)
            value = _coerce(values[name], hints[name], name, problems)
            if len(problems) > n_before and "e.g." not in problems[-1]:
                problems[-1] += _example(field, name)
            spec: _Check | None = field.metadata.get("check")
            if len(problems) == n_before and spec is not None:
                raw = values[name]
                is_list = isinstance(value, (list, tuple)) and spec.each
                for item, shown in zip(value, raw) if is_list else [(value, raw)]:
                    if item is not None and not spec.accepts(item):
                        problems.append(f"'{name}': {shown!r} is not {spec.describe()}" + _example(field, name))
                        break
            kwargs[name] = value
        if problems:
            return None  # type: ignore[return-value]
        return cls(**kwargs)

    def validate(self) -> None:
        """Rules across fields; raise :class:`ConfigError` with the field name and the fix. Default: none."""

    # ------------------------------------------------------------------ views

    def as_dict(self) -> dict[str, Any]:
        """Plain values (nested configs as dicts, tuples as lists): what a label or a record stores."""
        return _plain(self)

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes``, checked like :meth:`from_values`."""
        return type(self).from_values({**self.as_dict(), **changes}, where=type(self).__name__)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {name: f.metadata.get("help", "") for name, f in config_fields(cls).items()}


# ---------------------------------------------------------------------- helpers


def _plain(value: Any) -> Any:
    if isinstance(value, ExperimentConfig):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _example(field: dataclasses.Field, name: str) -> str:
    spec: _Check | None = field.metadata.get("check")
    if spec is not None and spec.example is not None:
        return f"; e.g. {name}: {spec.example!r}"
    if field.default is not dataclasses.MISSING:
        return f"; e.g. {name}: {field.default!r}"
    return ""


def _join(where: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where}:\n  - " + "\n  - ".join(problems)


def _close_match(key: str, names: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(key, names, n=1, cutoff=0.75)
    return found[0] if found else None


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", str(tp))
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Check ``value`` against annotation ``tp``; return it in the field's form (lists -> tuples)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            trial: list[str] = []
            result = _coerce(value, option, path, trial)
            if not trial:
                return result
        problems.append(f"'{path}' must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
        return value
    if origin is Literal:
        if value not in args:
            problems.append(f"'{path}': {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"'{path}' must be a list, got {type(value).__name__} {value!r}")
            return value
        item_type = args[0] if args else Any
        return tuple(_coerce(v, item_type, f"{path}[{i}]", problems) for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            problems.append(f"'{path}' must be a mapping, got {type(value).__name__} {value!r}")
            return value
        value_type = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, value_type, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, ExperimentConfig):
        nested: list[str] = []
        built = tp._build(value, path, nested)
        problems.extend(_nest(path, p) for p in nested)
        return built
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"'{path}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"'{path}' must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            problems.append(f"'{path}' must be a number, got {type(value).__name__} {value!r}")
            return value
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"'{path}' must be a string, got {type(value).__name__} {value!r}")
        return value
    return value


def _nest(path: str, problem: str) -> str:
    """Prefix a nested problem ("'keep': 1.5 is ...") with its parent path ("'rows[2].keep': ...")."""
    if problem.startswith("'"):
        return f"'{path}." + problem[1:]
    return f"{path}: {problem}"
