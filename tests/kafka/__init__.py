"""Tests of Kafka subscriptions against a real Apache Kafka broker (see broker.py and conftest.py)."""
