"""The runtime: store, engine, invokers, ingress."""
