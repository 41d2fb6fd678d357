"""Serializers for handler inputs and outputs, run results and state values.

The default is JSON. When a type hint names a pydantic model, a msgspec Struct or a dataclass, values are
converted to and from it; anything else goes through `json`. `None` is always the empty byte string, as in
Restate.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

T = TypeVar("T")

try:  # pydantic is optional: only users who annotate with models need it.
    import pydantic as _pydantic
except ImportError:  # pragma: no cover - exercised only without pydantic installed
    _pydantic = None

try:  # msgspec is optional too (`pip install durably[msgspec]`), as in restate-sdk.
    import msgspec as _msgspec
except ImportError:  # pragma: no cover - exercised only without msgspec installed
    _msgspec = None


class UnencodableValue(TypeError):
    """A value JSON cannot represent (a set, bytes, an arbitrary object), found while encoding.

    `type_name` is the offending value's type and `path` where it sits ("" for the value itself, else e.g.
    "['items'][2]"), so callers can say exactly what to change.
    """

    def __init__(self, type_name: str, path: str = "") -> None:
        where = f" at {path}" if path else ""
        super().__init__(f"a {type_name}{where} cannot be encoded as JSON")
        self.type_name = type_name
        self.path = path


class Serde(ABC, Generic[T]):
    """Turns values into bytes and back. Subclass it for a custom wire format."""

    @abstractmethod
    def serialize(self, obj: T | None) -> bytes:
        """Encode a value."""

    @abstractmethod
    def deserialize(self, buf: bytes) -> T | None:
        """Decode bytes produced by `serialize`."""


class BytesSerde(Serde[bytes]):
    """Passes bytes through unchanged."""

    def serialize(self, obj: bytes | None) -> bytes:
        """Return the bytes as they are (None becomes b"")."""
        return b"" if obj is None else bytes(obj)

    def deserialize(self, buf: bytes) -> bytes:
        """Return the bytes as they are."""
        return buf


class JsonSerde(Serde[Any]):
    """Plain `json.dumps`/`json.loads`."""

    def serialize(self, obj: Any) -> bytes:
        """Encode with json.dumps (None becomes b"")."""
        if obj is None:
            return b""
        try:
            return json.dumps(obj, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            _dumps(obj)  # raises UnencodableValue naming the culprit
            raise

    def deserialize(self, buf: bytes) -> Any:
        """Decode with json.loads (b"" becomes None)."""
        if not buf:
            return None
        return json.loads(buf)


def _unwrap_optional(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _is_pydantic_model(hint: Any) -> bool:
    return _pydantic is not None and isinstance(hint, type) and issubclass(hint, _pydantic.BaseModel)


def is_pydantic(annotation: Any) -> bool:
    """Whether a type hint is a pydantic model class."""
    return _is_pydantic_model(annotation)


def is_msgspec_struct(annotation: Any) -> bool:
    """Whether a type hint is a msgspec Struct class."""
    return _msgspec is not None and isinstance(annotation, type) and issubclass(annotation, _msgspec.Struct)


def _to_jsonable(obj: Any) -> Any:
    if _pydantic is not None and isinstance(obj, _pydantic.BaseModel):
        return obj.model_dump(mode="json")
    if _msgspec is not None and isinstance(obj, _msgspec.Struct):
        return _msgspec.to_builtins(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    # Returning the object itself would make json report a "Circular reference"; name the culprit instead.
    raise UnencodableValue(type(obj).__name__)


# One encoder for every value: `json.dumps` with arguments builds a new JSONEncoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_to_jsonable)
_DECODER = json.JSONDecoder()


def _dumps(obj: Any) -> bytes:
    kind = type(obj)
    # The commonest step results skip the encoder; the bytes are exactly what json.dumps writes.
    if kind is int:
        return int.__repr__(obj).encode()
    if kind is bool:
        return b"true" if obj else b"false"
    try:
        return _ENCODER.encode(obj).encode()
    except UnencodableValue as e:
        if isinstance(obj, (dict, list, tuple)):
            raise UnencodableValue(e.type_name, _locate(obj, e.type_name)) from None
        raise
    except (TypeError, ValueError) as e:  # non-string dict keys, a real reference cycle
        raise UnencodableValue(f"{type(obj).__name__} ({e})") from None


def _locate(obj: Any, type_name: str, path: str = "", depth: int = 0) -> str:
    """Where in a dict/list tree the first value of type `type_name` sits (for the error message)."""
    if depth > 20:
        return path
    items: Any = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        here = f"{path}[{k!r}]"
        if type(v).__name__ == type_name and not isinstance(v, (dict, list, tuple, str, int, float, bool)):
            return here
        if isinstance(v, (dict, list, tuple)):
            found = _locate(v, type_name, here, depth + 1)
            if found:
                return found
    return ""


def _dataclass_from(hint: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object for {hint.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(hint)
    kwargs = {}
    for f in dataclasses.fields(hint):
        if f.name in data:
            kwargs[f.name] = from_jsonable(hints.get(f.name, Any), data[f.name])
    return hint(**kwargs)


def _loads(buf: bytes) -> Any:
    """json.loads of bytes, faster for the common cases (short integers, UTF-8 text); the same result."""
    if type(buf) is not bytes:
        return json.loads(buf)
    if len(buf) < 16 and buf.isdigit() and (buf[0] != 48 or len(buf) == 1):  # 48: "0" (JSON has no leading 0)
        return int(buf)
    try:
        return _DECODER.decode(buf.decode())
    except ValueError:
        # Other encodings json.loads detects (UTF-16/32, a UTF-8 BOM), or really malformed: its own answer.
        return json.loads(buf)


def _needs_building(hint: Any, depth: int = 0) -> bool:
    """Whether `from_jsonable(hint, data)` may return something other than `data` itself."""
    hint = _unwrap_optional(hint)
    if _is_pydantic_model(hint) or is_msgspec_struct(hint):
        return True
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return True
    if typing.get_origin(hint) is list:
        args = typing.get_args(hint)
        return bool(args) and (depth > 8 or _needs_building(args[0], depth + 1))
    return False


def from_jsonable(hint: Any, data: Any) -> Any:
    """Build the hinted models and dataclasses (also inside lists) from decoded JSON."""
    hint = _unwrap_optional(hint)
    if data is None:
        return None
    if _is_pydantic_model(hint):
        return hint.model_validate(data)
    if is_msgspec_struct(hint):
        return _msgspec.convert(data, type=hint)  # type: ignore[union-attr]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_from(hint, data)
    origin = typing.get_origin(hint)
    if origin is list and isinstance(data, list):
        (item,) = typing.get_args(hint) or (Any,)
        return [from_jsonable(item, x) for x in data]
    return data


class DefaultSerde(Serde[T]):
    """JSON, with pydantic models, msgspec Structs and dataclasses built from the type hint when one is given."""

    def __init__(self, type_hint: Any = None) -> None:
        self.type_hint = _unwrap_optional(type_hint) if type_hint is not None else None
        self._pydantic = _is_pydantic_model(self.type_hint)
        self._msgspec = is_msgspec_struct(self.type_hint)
        # Plain JSON (no hint, or one that builds nothing: int, str, dict[str, Any]...) decodes with json alone.
        self._plain = self.type_hint is None or not _needs_building(self.type_hint)

    def with_maybe_type(self, type_hint: Any) -> DefaultSerde[Any]:
        """A DefaultSerde for `type_hint` (this one if no hint is given)."""
        if type_hint is None or type_hint is self.type_hint:
            return self
        return default_serde(type_hint)

    def serialize(self, obj: T | None) -> bytes:
        """Encode as JSON (pydantic models through model_dump_json)."""
        if obj is None:
            return b""
        if _pydantic is not None and isinstance(obj, _pydantic.BaseModel):
            return obj.model_dump_json().encode()
        if _msgspec is not None and isinstance(obj, _msgspec.Struct):
            return _msgspec.json.encode(obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return _dumps(dataclasses.asdict(obj))
        return _dumps(obj)

    def deserialize(self, buf: bytes) -> T | None:
        """Decode JSON, building the hinted model, Struct or dataclass if there is one."""
        if not buf:
            return None
        if self._pydantic:
            return self.type_hint.model_validate_json(buf)  # type: ignore[union-attr]
        if self._msgspec:
            return _msgspec.json.decode(buf, type=self.type_hint)  # type: ignore[union-attr]
        data = _loads(buf)
        if self._plain:
            return data
        return from_jsonable(self.type_hint, data)


# DefaultSerde per type hint: a step's serde is picked on every ctx.run, and the hint's analysis is not free.
_BY_HINT: dict[Any, DefaultSerde[Any]] = {}


def default_serde(type_hint: Any = None) -> DefaultSerde[Any]:
    """The DefaultSerde for a type hint (shared: DefaultSerde holds no per-use state)."""
    try:
        return _BY_HINT[type_hint]
    except KeyError:
        serde: DefaultSerde[Any] = DefaultSerde(type_hint)
        if len(_BY_HINT) < 10_000:
            _BY_HINT[type_hint] = serde
        return serde
    except TypeError:  # an unhashable hint
        return DefaultSerde(type_hint)


class PydanticJsonSerde(Serde[T]):
    """JSON through a pydantic model class."""

    def __init__(self, model: type[T]) -> None:
        self.model = model

    def serialize(self, obj: T | None) -> bytes:
        """Encode with model_dump_json."""
        if obj is None:
            return b""
        return obj.model_dump_json().encode()  # type: ignore[attr-defined]

    def deserialize(self, buf: bytes) -> T | None:
        """Validate and build the model."""
        if not buf:
            return None
        return self.model.model_validate_json(buf)  # type: ignore[attr-defined]


class MsgspecJsonSerde(Serde[T]):
    """JSON through a msgspec Struct class (needs `msgspec`, e.g. `pip install durably[msgspec]`)."""

    def __init__(self, model: type[T]) -> None:
        if _msgspec is None:
            raise ImportError("MsgspecJsonSerde needs msgspec: pip install -e '.[msgspec]' in your durably checkout")
        self.model = model

    def serialize(self, obj: T | None) -> bytes:
        """Encode with msgspec.json.encode."""
        if obj is None:
            return b""
        return _msgspec.json.encode(obj)  # type: ignore[union-attr]

    def deserialize(self, buf: bytes) -> T | None:
        """Validate and build the Struct."""
        if not buf:
            return None
        return _msgspec.json.decode(buf, type=self.model)  # type: ignore[union-attr]


def serde_for(serde: Serde[Any] | None, type_hint: Any) -> Serde[Any]:
    """The serde to use for a value: the explicit one, narrowed by a type hint when it is the default."""
    if serde is None:
        return default_serde(type_hint)
    if isinstance(serde, DefaultSerde) and type_hint is not None:
        return serde.with_maybe_type(type_hint)
    return serde
