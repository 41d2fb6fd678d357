"""A serde for any type pydantic can validate (models, dataclasses, unions, lists of them)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import TypeAdapter

from durably.sdk.serde import Serde

T = TypeVar("T")


class PydanticTypeAdapter(Serde[T]):
    """JSON through `pydantic.TypeAdapter(model_type)`; None is the empty byte string."""

    def __init__(self, model_type: type[T] | Any) -> None:
        self._adapter: TypeAdapter[T] = TypeAdapter(model_type)

    def serialize(self, obj: T | None) -> bytes:
        """Encode as JSON."""
        if obj is None:
            return b""
        return self._adapter.dump_json(obj)

    def deserialize(self, buf: bytes) -> T | None:
        """Decode and validate JSON."""
        if not buf:
            return None
        return self._adapter.validate_json(buf)
