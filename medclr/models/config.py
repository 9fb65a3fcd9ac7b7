"""Dataclass configs that document themselves, and a strict dict -> dataclass reader for YAML.

Each field carries its own help text (``knob(default, "what it does")``), as in peft's configs. The reader
:func:`from_dict` converts plain YAML data into nested dataclasses, checks types, and rejects unknown keys with a
message that names the key and lists the valid ones, so a typo such as ``pach_size`` fails loudly instead of
silently training the default architecture.

A field typed as a *registered* config base (a class with ``registry``) is read by its ``name`` key:
``{"name": "cxr_vit", "patch_size": 16}`` becomes ``ViTConfig(patch_size=16)``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin

from medclr.errors import MedclrError
from medclr.registry import Registry

T = TypeVar("T")
C = TypeVar("C", bound="RegisteredConfig")


class MedclrConfigError(MedclrError, ValueError):
    """A model or training config that medclr cannot use; the message names the key and says what to do."""


def knob(default: Any, help: str) -> Any:
    """A dataclass field with a default and its documentation (``field.metadata["help"]``)."""
    if type(default).__hash__ is None:  # mutable (list, dict, dataclass instance): a fresh copy per instance
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def doc(help: str) -> dict[str, str]:
    """Field metadata for ``dataclasses.field(default=..., metadata=doc("..."))`` (where ``knob`` can't be used)."""
    return {"help": help}


def help_text(cls: type) -> dict[str, str]:
    """{field name: help} of a config dataclass, for error messages and generated docs."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


@dataclasses.dataclass
class RegisteredConfig:
    """Base of configs chosen by name from a registry (encoders, heads); subclasses register themselves."""

    registry: ClassVar[Registry[Any]]
    registered_name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return typing.cast(dict[str, Any], to_dict(self))


def register_config(registry: Registry[Any], name: str) -> Callable[[type[C]], type[C]]:
    """Register a config dataclass under ``name`` and remember the name on the class (for ``to_dict``)."""

    def add(cls: type[C]) -> type[C]:
        cls.registered_name = name
        return typing.cast(type[C], registry.register(name)(cls))

    return add


def to_dict(obj: Any) -> Any:
    """Plain YAML-ready data for a config tree (registered configs keep their ``name``)."""
    if isinstance(obj, RegisteredConfig) and type(obj).registered_name:
        return {"name": type(obj).registered_name, **{f.name: to_dict(getattr(obj, f.name)) for f in _fields(obj)}}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in _fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Read ``data`` (parsed YAML) as dataclass ``cls``; ``where`` names the location in error messages."""
    return typing.cast(T, _coerce(cls, data, where))


def _fields(obj: Any) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(obj) if f.init]


def _read_dataclass(cls: type, data: Any, where: str) -> Any:
    if isinstance(cls, type) and issubclass(cls, RegisteredConfig) and not cls.registered_name:
        if not isinstance(data, dict) or "name" not in data:
            raise MedclrConfigError(f"{where}: needs a 'name' (one of: {', '.join(cls.registry.names())})")
        try:
            cls = cls.registry.get(str(data["name"]))
        except KeyError as err:
            raise MedclrConfigError(f"{where}.name: {err.args[0]}") from None
        data = {k: v for k, v in data.items() if k != "name"}
    elif isinstance(cls, type) and issubclass(cls, RegisteredConfig) and isinstance(data, dict):
        if data.get("name", cls.registered_name) != cls.registered_name:
            raise MedclrConfigError(f"{where}.name: expected '{cls.registered_name}', got '{data['name']}'")
        data = {k: v for k, v in data.items() if k != "name"}
    if not isinstance(data, dict):
        raise MedclrConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        valid = "; ".join(f"{n} ({f.metadata.get('help', '')})" if f.metadata.get("help") else n
                          for n, f in fields.items())
        raise MedclrConfigError(f"{where}: unknown key '{unknown[0]}' for {cls.__name__}; valid keys: {valid}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _read_dataclass(typing.cast(type, hint), value, where)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(option, value, where)
            except MedclrConfigError as err:
                errors.append(str(err))
        raise MedclrConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is Literal:
        if value not in get_args(hint):
            raise MedclrConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, get_args(hint)))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise MedclrConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(hint)
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise MedclrConfigError(f"{where}: expected a mapping, got {value!r}")
        _, item = get_args(hint)
        return {str(k): _coerce(item, v, f"{where}.{k}") for k, v in value.items()}
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise MedclrConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MedclrConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MedclrConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise MedclrConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise MedclrConfigError(f"{where}: cannot read a value of type {hint}")
