"""Use cases. Each takes a session (the unit of work) and plain values, checks permissions itself, and
records audit events in the same transaction as the change."""
