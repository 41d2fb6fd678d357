"""The engine: the one writer of every invocation, journal, state, timer and inbox change."""
