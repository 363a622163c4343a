"""Strict request-parameter handling for the fake Stripe server.

Two jobs:

* :func:`decode_form` turns the SDK's form encoding (``items[0][price]=p``,
  ``lookup_keys[0]=k``, ``metadata[k]=v``, also ``a[]=x``) into nested dicts.
  Lists arrive as dicts with numeric keys; :func:`validate_params` converts them.
* :func:`validate_params` checks the decoded tree against the stripe SDK's own
  ``TypedDict`` for that call (``stripe.params.SubscriptionUpdateParams`` ...),
  recursively, and coerces the string values to ``int``/``bool``/``float``/
  ``Decimal`` as the type hints say.  Anything the SDK's types do not define is
  rejected with Stripe's ``parameter_unknown`` error; enum (``Literal``) values
  outside the allowed set, malformed integers/booleans and missing required keys
  are rejected too.

The SDK's ``RequestOptions`` keys (``api_key``, ``idempotency_key`` ...) are
client-side options, never wire parameters, and are therefore not accepted.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Union
from urllib.parse import parse_qsl

import typing_extensions
from stripe._request_options import RequestOptions

__all__ = ["ParamError", "decode_form", "params_class", "validate_params"]

_REQUEST_OPTION_KEYS = frozenset(RequestOptions.__annotations__)
_WRAPPERS = {
    typing.NotRequired,
    typing.Required,
    typing_extensions.NotRequired,
    typing_extensions.Required,
}
_LOCALNS: dict[str, Any] = {"StripeContext": object, "Mapping": typing.Mapping}
_MAX_DEPTH = 12


class ParamError(Exception):
    """A request failed parameter validation (HTTP 400, ``invalid_request_error``)."""

    def __init__(self, code: str, param: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.message = message


# --------------------------------------------------------------------------- decoding


def _split_key(key: str) -> list[str]:
    """``items[0][price]`` -> ``["items", "0", "price"]``; ``a[]`` -> ``["a", ""]``."""
    head, sep, rest = key.partition("[")
    if not head:
        raise ParamError("parameter_invalid", key, f"Invalid parameter name: {key}")
    tokens = [head]
    if not sep:
        return tokens
    rest = "[" + rest
    while rest:
        if not rest.startswith("[") or "]" not in rest:
            raise ParamError("parameter_invalid", key, f"Invalid parameter name: {key}")
        end = rest.index("]")
        tokens.append(rest[1:end])
        rest = rest[end + 1 :]
    return tokens


def decode_form(raw: str) -> dict[str, Any]:
    """Decode an ``application/x-www-form-urlencoded`` body or query string."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True, strict_parsing=False):
        tokens = _split_key(key)
        if len(tokens) > _MAX_DEPTH:
            raise ParamError("parameter_invalid", key, f"Parameter nested too deeply: {key}")
        node = root
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            if token == "":  # `a[]` style: append
                token = str(sum(1 for k in node if k.isdigit()))
            if last:
                if isinstance(node.get(token), dict):
                    raise ParamError("parameter_invalid", key, f"Invalid value for {key}")
                node[token] = value
            else:
                child = node.setdefault(token, {})
                if not isinstance(child, dict):
                    raise ParamError("parameter_invalid", key, f"Invalid value for {key}")
                node = child
    return root


# --------------------------------------------------------------------------- schema


@functools.cache
def params_class(name: str) -> type:
    """The ``stripe.params`` TypedDict called ``name`` (e.g. ``SubscriptionUpdateParams``);
    a dotted name is in a sub-package (``test_helpers.TestClockAdvanceParams``)."""
    import importlib

    *package, last = name.split(".")
    module = importlib.import_module(".".join(["stripe.params", *package]))
    cls = getattr(module, last)
    if not typing_extensions.is_typeddict(cls):
        raise TypeError(f"{name} is not a TypedDict")
    return cls


@functools.cache
def _fields(td: type) -> tuple[dict[str, Any], frozenset[str]]:
    hints = typing.get_type_hints(td, localns=_LOCALNS, include_extras=True)
    required = frozenset(getattr(td, "__required_keys__", frozenset()))
    if set(hints) >= _REQUEST_OPTION_KEYS:
        hints = {k: v for k, v in hints.items() if k not in _REQUEST_OPTION_KEYS}
        required = required - _REQUEST_OPTION_KEYS
    return hints, required


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) in _WRAPPERS or typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) in (Literal, typing_extensions.Literal)


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, typing.List)  # noqa: UP006


def _mapping_value_type(tp: Any) -> Any | None:
    """Value type for ``Dict[str, X]`` and ``UntypedStripeObject[X]``; else ``None``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (dict, typing.Dict, typing.Mapping) and len(args) == 2:  # noqa: UP006
        return args[1]
    if origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject":
        return args[0] if args else Any
    return None


# --------------------------------------------------------------------------- validation


def validate_params(class_name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Validate ``raw`` against ``stripe.params.<class_name>``; returns coerced params."""
    return _validate_typeddict(raw, params_class(class_name), "")


def _name(prefix: str, key: str) -> str:
    return f"{prefix}[{key}]" if prefix else key


def _validate_typeddict(value: Any, td: type, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ParamError(
            "parameter_invalid_object", path, f"Invalid object: {path} must be a hash."
        )
    hints, required = _fields(td)
    out: dict[str, Any] = {}
    for key, sub in value.items():
        full = _name(path, key)
        if key not in hints:
            message = f"Received unknown parameter: {full}"
            close = difflib.get_close_matches(key, list(hints), n=1)
            if close:
                message += f". Did you mean {close[0]}?"
            raise ParamError("parameter_unknown", full, message)
        out[key] = _validate(sub, hints[key], full)
    for key in sorted(required):
        if key not in value:
            full = _name(path, key)
            raise ParamError("parameter_missing", full, f"Missing required param: {full}.")
    return out


def _as_list(value: Any, path: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(k.isdigit() for k in value):
        indexes = sorted(int(k) for k in value)
        return [value[str(i)] for i in indexes]
    raise ParamError("parameter_invalid_array", path, f"Invalid array: {path}")


def _validate_scalar(value: str, tp: Any, path: str) -> Any:
    if tp is bool:
        if value in ("true", "false"):
            return value == "true"
        raise ParamError("parameter_invalid_boolean", path, f"Invalid boolean: {value}")
    if tp is int:
        try:
            return int(value, 10)
        except ValueError:
            raise ParamError(
                "parameter_invalid_integer", path, f"Invalid integer: {value}"
            ) from None
    if tp is float:
        try:
            return float(value)
        except ValueError:
            raise ParamError(
                "parameter_invalid_decimal", path, f"Invalid decimal: {value}"
            ) from None
    if tp is Decimal:
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ParamError(
                "parameter_invalid_decimal", path, f"Invalid decimal: {value}"
            ) from None
    if tp is str:
        return value
    raise ParamError("parameter_invalid", path, f"Invalid value for {path}: {value}")


_SCALARS = (bool, int, float, Decimal, str)


def _validate(value: Any, tp: Any, path: str) -> Any:
    tp = _unwrap(tp)
    if tp is Any or tp is object:
        return value
    if _is_union(tp):
        return _validate_union(value, typing.get_args(tp), path)
    if _is_literal(tp):
        return _validate_union(value, (tp,), path)
    if typing_extensions.is_typeddict(tp):
        return _validate_typeddict(value, tp, path)
    if _is_list(tp):
        (item_tp,) = typing.get_args(tp) or (Any,)
        items = _as_list(value, path)
        return [_validate(v, item_tp, f"{path}[{i}]") for i, v in enumerate(items)]
    value_tp = _mapping_value_type(tp)
    if value_tp is not None:
        if not isinstance(value, dict):
            raise ParamError(
                "parameter_invalid_object", path, f"Invalid object: {path} must be a hash."
            )
        return {k: _validate(v, value_tp, f"{path}[{k}]") for k, v in value.items()}
    if tp in _SCALARS:
        if not isinstance(value, str):
            raise ParamError(
                "parameter_invalid", path, f"Invalid value for {path}: expected a scalar"
            )
        return _validate_scalar(value, tp, path)
    raise ParamError("parameter_invalid", path, f"Unsupported parameter type for {path}")


def _validate_union(value: Any, members: tuple[Any, ...], path: str) -> Any:
    flat: list[Any] = []
    for member in members:
        member = _unwrap(member)
        if _is_union(member):
            flat.extend(_unwrap(m) for m in typing.get_args(member))
        else:
            flat.append(member)
    literals = [v for m in flat if _is_literal(m) for v in typing.get_args(m)]
    enum_values = [v for v in literals if v != ""]
    others = [m for m in flat if not _is_literal(m)]
    if isinstance(value, str):
        if value in literals:
            return value
        for member in others:
            if member in (int, float, Decimal, bool):
                try:
                    return _validate_scalar(value, member, path)
                except ParamError:
                    continue
        # `Literal[...]|str` is the SDK's open-enum spelling: enforce the enum.
        if str in others and not enum_values:
            return value
        if enum_values:
            allowed = ", ".join(str(v) for v in enum_values)
            raise ParamError(
                "parameter_invalid_enum",
                path,
                f"Invalid {path}: must be one of {allowed}",
            )
        scalar = next((m for m in others if m in _SCALARS), None)
        if scalar is not None:
            return _validate_scalar(value, scalar, path)
        raise ParamError("parameter_invalid", path, f"Invalid value for {path}: {value}")
    first_error: ParamError | None = None
    for member in others:
        if member in _SCALARS:
            continue
        try:
            return _validate(value, member, path)
        except ParamError as exc:
            # Prefer the error from the richest member (a TypedDict names the bad key).
            if first_error is None or typing_extensions.is_typeddict(member):
                first_error = exc
    if first_error is not None:
        raise first_error
    raise ParamError("parameter_invalid", path, f"Invalid value for {path}")
