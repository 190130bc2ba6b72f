"""``/`` (issue 16): the URL the quick start prints answers with a page that says where to go next."""

from __future__ import annotations

from fastapi.testclient import TestClient

from healthway import __version__
from healthway.app import build
from healthway.settings import Settings
from healthway.storage.db import Database
from healthway.testing import http_app


def test_the_root_names_the_version_and_the_next_steps(db: Database) -> None:
    settings = Settings(_env_file=None, http_port=8099)
    with TestClient(http_app(build(settings, db=db))) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for link in ("/openapi.json", "/healthz"):
            assert f'href="{link}"' in page.text and client.get(link).status_code == 200
        assert f"Healthway {__version__}" in page.text
        assert "http://127.0.0.1:8099/v2/auth/token" in page.text
        assert "healthway source create --env development" in page.text
        assert "/" not in client.get("/openapi.json").json()["paths"]  # a page for people, not an API route
