"""The HTTP surfaces: ingress, admin API, web UI; auth, limits and request checks."""
