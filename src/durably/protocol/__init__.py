"""The Restate service protocol: messages, codec, framing and ids. Pure; no I/O."""
