"""The web UI served by the admin listener at /ui."""
