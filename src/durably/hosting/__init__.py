"""Running an app in a process: the loader, capture of apps built in main(), embedded mode, the endpoint server."""
