"""SFTP host keys pinned on first use, kept with their destination (the sender's ``HostKeyPins``)."""

from __future__ import annotations

from healthway.services import destinations
from healthway.storage.db import Database


class DatabaseHostKeyPins:
    def __init__(self, db: Database) -> None:
        self._db = db

    def pin(self, destination_id: str, fingerprint: str) -> str:
        with self._db.session() as session:
            return destinations.pin_host_key(session, destination_id, fingerprint)
