"""restate-sdk's `restate.endpoint`: `app(services=[...])` bundles services into an ASGI application."""

from durably.sdk.service import App, app

# restate-sdk builds an Endpoint and turns it into the ASGI app; in Durably the App is both.
Endpoint = App

__all__ = ["App", "Endpoint", "app"]
