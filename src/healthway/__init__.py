"""Healthway: a self-hosted health data exchange gateway."""

__version__ = "0.1.0"
