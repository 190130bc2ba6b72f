"""Adapters between the wire and the services."""
