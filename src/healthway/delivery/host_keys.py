"""SFTP host keys pinned on first use, kept with their destination (the sender's ``HostKeyPins``).

The rule of pinning (first use stores, later uses must match) belongs to the destinations service; the
composition root hands it in as ``pin``, so delivery does not import services.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from healthway.storage.db import Database

PinRule = Callable[[Session, str, str], str]  # (session, destination ID, fingerprint) -> the pinned fingerprint


class DatabaseHostKeyPins:
    def __init__(self, db: Database, pin: PinRule) -> None:
        self._db = db
        self._pin = pin

    def pin(self, destination_id: str, fingerprint: str) -> str:
        with self._db.session() as session:
            return self._pin(session, destination_id, fingerprint)
