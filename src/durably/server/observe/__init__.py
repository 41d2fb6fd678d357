"""Observability: metrics, traces, lifecycle logs, loop-stall and thread watch."""
