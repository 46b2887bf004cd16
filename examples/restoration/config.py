"""Typed YAML configuration: plain mappings (``yaml.safe_load``) <-> nested dataclasses, errors naming the key.

A task describes its configuration as dataclasses with type hints (``int``, ``float``, ``str``, ``bool``,
``Literal[...]``, ``X | None``, ``list[X]``, ``dict[str, X]``, nested dataclasses, ``Any``) and an optional
``validate(self, key)`` method for value checks. :func:`from_dict` converts and validates; unknown keys, wrong
types and bad values raise :class:`ConfigError` naming the full dotted key (``train.s1.max_steps: expected int,
got str 'ten'``). YAML text is only ever read with ``yaml.safe_load``, never evaluated. ``--set key=value``
overrides (:func:`apply_overrides`) are applied to the raw mapping before validation, their values parsed as YAML
scalars. PyYAML reads ``1e-4`` as a string (YAML 1.1): a ``float`` field accepts numeric strings.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

__all__ = ["ConfigError", "from_dict", "to_dict", "apply_overrides", "read_yaml_mapping", "load_yaml"]

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{key}: may not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {_type_name(tp)}, got "
                          f"{type(value).__name__} {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if value is None:
        raise ConfigError(f"{key}: may not be null (expected {_type_name(tp)})")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool (true/false), got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 1e-4 as a string; accept numeric literals
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):  # .inf / .nan parse as floats but no setting here means them
            raise ConfigError(f"{key}: must be a finite number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # pragma: no cover - schema bug


def _from_dict(cls: type, data: Any, key: str) -> Any:
    where = key or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        prefix = f"{key}." if key else ""
        raise ConfigError(f"unknown key {prefix}{unknown[0]!s}" + (f" (and {unknown[1:]})" if unknown[1:] else "")
                          + f"; known keys{' of ' + key if key else ''}: {names}")
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], f"{key}.{name}" if key else name)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(key or "config")
    return obj


def from_dict(cls: type[C], data: Any, key: str = "") -> C:
    """Convert a plain mapping into the dataclass ``cls`` (recursively), calling each dataclass's
    ``validate(key)``; ``key`` prefixes the dotted names in errors (empty: the top level)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    return _from_dict(cls, data, key)


def to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form (YAML/checkpoint friendly) of a config dataclass."""
    return dataclasses.asdict(config)


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a raw config mapping (values parsed as YAML; keys validated later)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {item!r}: malformed key {key!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse value {text!r}: {err}") from err
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def read_yaml_mapping(path: str | Path, config_dir: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """``(resolved path, mapping)`` of a YAML file; a bare name without suffix is looked up as
    ``config_dir/NAME.yaml`` ("demo" -> ``configs/demo.yaml``). An empty file is an empty mapping."""
    path = Path(path)
    if config_dir is not None and not path.is_file() and not path.suffix and (Path(config_dir) / f"{path}.yaml"
                                                                              ).is_file():
        path = Path(config_dir) / f"{path}.yaml"
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return path, data


def load_yaml(cls: type[C], path: str | Path, overrides: list[str] | None = None,
              config_dir: str | Path | None = None) -> C:
    """Read a YAML file, apply ``overrides`` and convert it into ``cls``; errors are prefixed by the file."""
    path, data = read_yaml_mapping(path, config_dir)
    try:
        return from_dict(cls, apply_overrides(data, overrides))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
