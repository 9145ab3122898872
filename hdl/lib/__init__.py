"""Shared RTL building blocks: arbiters, queues, counters."""
