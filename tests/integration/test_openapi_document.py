"""The OpenAPI document describes every route the app serves (the lean Starlette ones included), with their
request and error shapes (DESIGN §3), while those routes stay plain Starlette routes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route

from healthway.app import build
from healthway.settings import Settings
from healthway.testing import http_app

NOT_API = {"/"}  # the home page: a page for people


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    return http_app(build(Settings(_env_file=None, data_dir=data_dir)))


@pytest.fixture(scope="module")
def spec(app: FastAPI) -> dict[str, Any]:
    response = TestClient(app).get("/openapi.json")  # no lifespan: the document needs no running part
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _served(app: FastAPI) -> set[tuple[str, str]]:
    """(path, method) of every route the app serves, FastAPI's own documentation pages aside."""
    own = {app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url}
    served = set()
    for route in iter_route_contexts(app.routes):
        path, methods = route.path, route.methods or set()
        if path is None or path in own or path in NOT_API:
            continue
        served |= {(path, method.lower()) for method in methods if method != "HEAD"}
    return served


def _documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, operations in spec["paths"].items() for method in operations}


def test_every_served_route_is_documented_and_nothing_else(app: FastAPI, spec: dict[str, Any]) -> None:
    served = _served(app)
    assert {("/v2/auth/token", "post"), ("/endpoint", "post"), ("/fhir/R4/{type}/{id}", "get")} <= served
    assert served == _documented(spec)
    assert "/" not in spec["paths"]


def test_the_lean_routes_stay_off_fastapis_path(app: FastAPI) -> None:
    lean = {"/v2/auth/token", "/auth/authenticate", "/auth/refreshToken", "/endpoint", "/fhir/R4/$process-message"}
    routes = {route.path: route for route in app.router.routes if isinstance(route, Route)}
    assert lean <= routes.keys()
    assert not any(isinstance(routes[path], APIRoute) for path in lean)


def _schema(spec: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    name = ref["$ref"].rsplit("/", 1)[-1]
    schema: dict[str, Any] = spec["components"]["schemas"][name]
    return schema


def test_the_token_endpoint_takes_the_form_and_answers_rfc6749_errors(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/v2/auth/token"]["post"]
    form = _schema(spec, operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"])
    assert set(form["properties"]) == {"grant_type", "client_assertion_type", "client_assertion", "scope"}
    assert set(form["required"]) == {"grant_type", "client_assertion_type", "client_assertion"}
    ok = _schema(spec, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"access_token", "token_type", "expires_in", "scope"} <= set(ok["properties"])
    bad = operation["responses"]["400"]["content"]["application/json"]
    assert bad["example"]["error"] == "invalid_client"
    assert set(_schema(spec, bad["schema"])["properties"]) == {"error", "error_description"}
    assert "429" in operation["responses"]


def test_the_data_model_endpoint_documents_202_413_and_its_bearer(spec: dict[str, Any]) -> None:
    operation = spec["paths"]["/endpoint"]["post"]
    assert {"202", "400", "401", "403", "413", "429"} <= set(operation["responses"])
    accepted = _schema(spec, operation["responses"]["202"]["content"]["application/json"]["schema"])
    assert set(accepted["properties"]) == {"Meta", "Errors"}
    too_large = operation["responses"]["413"]["content"]["application/json"]
    assert too_large["example"]["error"]["code"] == "payload_too_large"
    assert set(_schema(spec, too_large["schema"])["properties"]) == {"error"}
    assert "Meta" in _schema(spec, operation["requestBody"]["content"]["application/json"]["schema"])["required"]
    (scheme,) = operation["security"][0]
    assert spec["components"]["securitySchemes"][scheme]["scheme"] == "bearer"


def test_fhir_routes_answer_operation_outcomes(spec: dict[str, Any]) -> None:
    process = spec["paths"]["/fhir/R4/$process-message"]["post"]
    assert "application/fhir+json" in process["requestBody"]["content"]
    for status in ("202", "400", "401", "413"):
        content = process["responses"][status]["content"]["application/fhir+json"]
        assert content["schema"]["$ref"].endswith("/OperationOutcome")
    read = spec["paths"]["/fhir/R4/{type}/{id}"]["get"]
    assert {p["name"] for p in read["parameters"]} >= {"type", "id", "Healthway-Source-Id"}
    assert {"502", "504"} <= set(read["responses"])


def test_legacy_routes_document_their_json_bodies(spec: dict[str, Any]) -> None:
    authenticate = spec["paths"]["/auth/authenticate"]["post"]
    body = _schema(spec, authenticate["requestBody"]["content"]["application/json"]["schema"])
    assert set(body["required"]) == {"apiKey", "secret"}
    tokens = _schema(spec, authenticate["responses"]["200"]["content"]["application/json"]["schema"])
    assert set(tokens["properties"]) == {"accessToken", "expires", "refreshToken"}
    refresh = spec["paths"]["/auth/refreshToken"]["post"]
    assert refresh["responses"]["401"]["content"]["application/json"]["example"]["error"]["code"]


def test_platform_operations_name_the_personal_access_token(spec: dict[str, Any]) -> None:
    sources = spec["paths"]["/platform/v1/sources"]["get"]
    assert sources["security"] == [{"personalAccessToken": []}]
    assert spec["components"]["securitySchemes"]["personalAccessToken"]["scheme"] == "bearer"
