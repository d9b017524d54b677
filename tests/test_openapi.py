"""ephemeral_auth/openapi.json against the URLconf (ephemeral_auth.api_urls) and the error codes (views.json).

The spec ships in the package; docs/openapi.json is a copy (tests/test_packaging.py checks they are equal).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, resolve
from django.urls.exceptions import Resolver404

from ephemeral_auth import api_urls
from ephemeral_auth.views.json import STATUS_BY_CODE

SPEC_PATH = Path(__file__).resolve().parent.parent / "ephemeral_auth" / "openapi.json"
PREFIX = "/api/auth"  # where the example project (tests.settings' ROOT_URLCONF) mounts the API
METHODS = ("get", "post", "put", "patch", "delete")
# Converter values for described path parameters when resolving them.
SAMPLE_PARAMS = {"provider": "standin"}


def load_spec():
    with SPEC_PATH.open(encoding="utf-8") as f:
        return json.load(f)


def route_to_openapi(route: str) -> str:
    """``oidc/<slug:provider>/authorize/`` -> ``/oidc/{provider}/authorize/``."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def url_routes(patterns=None, prefix=""):
    """Every route of the URLconf, as an OpenAPI path."""
    for pattern in patterns if patterns is not None else api_urls.urlpatterns:
        if isinstance(pattern, URLResolver):
            yield from url_routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            assert isinstance(pattern, URLPattern)
            yield route_to_openapi(prefix + str(pattern.pattern))


def concrete(path: str) -> str:
    return PREFIX + re.sub(r"{(\w+)}", lambda m: SAMPLE_PARAMS[m.group(1)], path)


def error_codes(response: dict) -> list[str]:
    """The error codes a described response lists (``allOf[...].properties.error.enum``)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    codes: list[str] = []
    for part in [schema, *schema.get("allOf", [])]:
        codes += part.get("properties", {}).get("error", {}).get("enum", [])
    return codes


def served_methods(client, path: str) -> set[str]:
    """The methods the view at ``path`` serves: those not answered 405."""
    served = set()
    for method in METHODS:
        response = getattr(client, method)(concrete(path), content_type="application/json")
        if response.status_code != 405:
            served.add(method)
    return served


def test_spec_is_openapi_3():
    spec = load_spec()
    assert spec["openapi"].startswith("3.")
    assert spec["servers"] == [{"url": PREFIX}]
    assert spec["paths"]


def test_every_route_of_the_urlconf_is_described():
    described = set(load_spec()["paths"])
    missing = set(url_routes()) - described
    assert not missing, f"routes of ephemeral_auth.api_urls missing from ephemeral_auth/openapi.json: {sorted(missing)}"


@pytest.mark.parametrize("path", sorted(load_spec()["paths"]))
def test_every_described_path_resolves_to_the_api(path):
    try:
        match = resolve(concrete(path))
    except Resolver404:
        pytest.fail(f"{path} is described but does not resolve")
    assert match.namespace == "ephemeral_auth_api"
    assert route_to_openapi(match.route.removeprefix(PREFIX.strip("/") + "/")) == path


@pytest.mark.django_db
@pytest.mark.parametrize("path", sorted(load_spec()["paths"]))
def test_described_methods_are_the_served_ones(client, path):
    described = {m for m in load_spec()["paths"][path] if m in METHODS}
    assert served_methods(client, path) == described


def test_every_listed_error_code_has_its_status():
    wrong = []
    for path, item in load_spec()["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                for code in error_codes(response):
                    actual = STATUS_BY_CODE.get(code)
                    if actual != int(status):
                        wrong.append(f"{method.upper()} {path} {status} {code} (STATUS_BY_CODE: {actual})")
    assert not wrong, "\n".join(wrong)


def test_every_json_operation_lists_its_error_codes():
    """A JSON endpoint describes at least method_not_allowed and service_unavailable."""
    for path, item in load_spec()["paths"].items():
        for method, operation in item.items():
            if path.startswith("/oidc/") and path != "/oidc/exchange/" and path != "/oidc/providers/":
                continue  # browser navigations (302), not JSON
            listed = {code for response in operation["responses"].values() for code in error_codes(response)}
            assert {"method_not_allowed", "service_unavailable"} <= listed, (method, path)
            if method == "post":
                assert "csrf_failed" in listed, (method, path)
