"""The server process: listeners, limits, shutdown and drain."""
