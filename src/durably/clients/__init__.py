"""Clients of the ingress and admin APIs, Durably's and Restate's."""
