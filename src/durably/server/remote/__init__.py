"""Driving remote deployments over HTTP/2 and HTTP/1.1: discovery and attempts."""
