"""restate-sdk's `restate.serde`: how inputs, outputs, run results and state values become bytes."""

from durably.sdk.serde import (
    BytesSerde,
    DefaultSerde,
    JsonSerde,
    MsgspecJsonSerde,
    PydanticJsonSerde,
    Serde,
    is_pydantic,
)

__all__ = ["BytesSerde", "DefaultSerde", "JsonSerde", "MsgspecJsonSerde", "PydanticJsonSerde", "Serde", "is_pydantic"]
