"""Runnable examples of client code, as the README shows it."""
