"""The provider registry, discovery and JWKS caching, the mozilla-django-oidc drop-in, the buttons.

Network answers come from the provider STAND-IN (tests/oidc_standin_provider.py).
"""

from __future__ import annotations

import logging
import types
from importlib import reload

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.cache import caches
from django.template import Context, Template
from django.test import RequestFactory
from django.urls import include, path

from ephemeral_auth.exceptions import OIDCError
from ephemeral_auth.oidc import discovery, providers
from ephemeral_auth.oidc.backend import OIDCBackend, backend_path


def test_settings_are_read_per_call(settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "kc": {"name": "Keycloak", "discovery_url": "https://kc.example/realms/x/.well-known/openid-configuration",
               "client_id": "app"},
    }
    assert [(p.slug, p.name) for p in providers.all_providers()] == [("kc", "Keycloak")]
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    assert providers.all_providers() == []


def test_defaults_of_a_provider(settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "google-work": {"discovery_url": "https://accounts.google.com/.well-known/openid-configuration",
                        "client_id": "app", "client_secret": "s3cret"},
    }
    provider = providers.get_provider("google-work")
    assert provider.name == "Google Work"
    assert provider.scopes == "openid email profile" and provider.sign_algo == "RS256"
    assert provider.create_users and not provider.link_by_verified_email
    assert not provider.link_staff_by_verified_email and not provider.shared_callback
    assert not provider.trust_amr and not provider.assume_email_verified
    assert "s3cret" not in repr(provider)


@pytest.mark.parametrize(
    "config",
    [
        {"discovery_url": "https://x/.well-known/openid-configuration"},  # no client_id
        {"client_id": "a"},  # no endpoints
        {"client_id": "a", "issuer": "https://x", "authorization_endpoint": "https://x/a"},  # no token endpoint
        {"client_id": "a", "discovery_url": "https://x/d", "scopes": "email"},  # no openid
        {"client_id": "a", "discovery_url": "https://x/d", "pkce_verifier_length": 42},
        {"client_id": "a", "discovery_url": "https://x/d", "token_auth_method": "private_key_jwt"},
        {"client_id": "a", "discovery_url": "https://x/d", "clientid": "typo"},
    ],
)
def test_misconfigured_providers_are_refused_and_logged(settings, caplog, config):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"bad": config}
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.oidc"):
        assert providers.all_providers() == []
        with pytest.raises(OIDCError) as raised:
            providers.get_provider("bad")
    assert raised.value.code == "provider_misconfigured"
    assert "misconfigured" in caplog.text


@pytest.mark.parametrize("slug", ["", "Upper", "../x", "a" * 65, None, 3])
def test_unknown_or_malformed_slugs(settings, slug):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    with pytest.raises(OIDCError) as raised:
        providers.get_provider(slug)
    assert raised.value.code == "unknown_provider"


def test_mozilla_settings_make_the_default_provider(settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.OIDC_RP_CLIENT_ID = "mozilla-client"
    settings.OIDC_RP_CLIENT_SECRET = "secret"
    settings.OIDC_OP_DISCOVERY_URL = "https://idp.example/.well-known/openid-configuration"
    settings.OIDC_CREATE_USER = False
    settings.OIDC_TOKEN_USE_BASIC_AUTH = True
    provider = providers.get_provider("default")
    assert provider.client_id == "mozilla-client" and not provider.create_users
    assert provider.token_auth_method == "client_secret_basic"
    # mozilla-django-oidc's own default algorithm is kept.
    assert provider.sign_algo == "RS256"  # not mozilla-django-oidc's HS256: the client secret could forge it


def test_an_explicit_default_wins_over_mozilla_settings(settings):
    settings.OIDC_RP_CLIENT_ID = "mozilla-client"
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "default": {"client_id": "ours", "discovery_url": "https://idp.example/.well-known/openid-configuration"}
    }
    assert providers.get_provider("default").client_id == "ours"


@pytest.mark.parametrize(
    ("url", "debug", "ok"),
    [
        ("https://idp.example/token", False, True),
        ("http://127.0.0.1:8080/token", False, True),
        ("http://[::1]/token", False, True),
        ("http://localhost/token", False, True),
        ("http://idp.example/token", False, False),
        ("http://idp.example/token", True, True),
        ("ftp://idp.example/token", True, False),
        ("https:///token", False, False),
        ("", False, False),
    ],
)
def test_endpoints_must_be_https_except_loopback_or_debug(settings, url, debug, ok):
    settings.DEBUG = debug
    if ok:
        assert discovery.check_endpoint(url, what="token_endpoint") == url
    else:
        with pytest.raises(OIDCError):
            discovery.check_endpoint(url, what="token_endpoint")


def test_discovery_issuer_must_match_its_url(oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(issuer="https://someone-else.example")
    }
    with pytest.raises(OIDCError) as raised:
        providers.endpoints(providers.get_provider("standin"))
    assert raised.value.code == "discovery_failed"


def test_explicit_endpoints_win_over_discovery(oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(token_endpoint=f"{oidc_standin.issuer}/other-token")
    }
    where = providers.endpoints(providers.get_provider("standin"))
    assert where.token_endpoint == f"{oidc_standin.issuer}/other-token"
    assert where.authorization_endpoint == f"{oidc_standin.issuer}/authorize"


def test_userinfo_can_be_skipped(oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": oidc_standin.provider_settings(use_userinfo=False)}
    assert providers.endpoints(providers.get_provider("standin")).userinfo_endpoint == ""


def test_discovery_errors(oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(discovery_url=f"{oidc_standin.issuer}/missing")
    }
    with pytest.raises(OIDCError) as raised:
        providers.endpoints(providers.get_provider("standin"))
    assert raised.value.code == "discovery_failed"


def test_discovery_is_cached_with_its_ttl(oidc_standin, settings):
    discovery.discovery_document(oidc_standin.discovery_url)
    discovery.discovery_document(oidc_standin.discovery_url)
    assert oidc_standin.requests.count(("GET", "/.well-known/openid-configuration")) == 1
    settings.EPHEMERAL_AUTH_OIDC_DISCOVERY_CACHE_TTL = 0
    caches["default"].clear()
    discovery.discovery_document(oidc_standin.discovery_url)
    discovery.discovery_document(oidc_standin.discovery_url)
    assert oidc_standin.requests.count(("GET", "/.well-known/openid-configuration")) == 3


@pytest.mark.django_db
def test_jwks_is_refetched_once_after_a_key_rotation(client, oidc_standin):
    from tests.test_oidc import sign_in

    sign_in(client, oidc_standin)
    client.logout()
    # The provider rotates its key: the cached JWKS no longer has the kid.
    oidc_standin.kid = "standin-key-2"
    response = sign_in(client, oidc_standin)
    assert response["Location"] == "/"
    assert oidc_standin.requests.count(("GET", "/jwks")) == 2


# The backend outside a flow.


def test_backend_ignores_other_credentials(rf):
    assert OIDCBackend().authenticate(rf.get("/"), username="u", password="p") is None


def test_backend_needs_no_settings_to_be_constructed(settings):
    # Django instantiates every backend for get_user(); mozilla-django-oidc's
    # would raise ImproperlyConfigured here without OIDC_OP_TOKEN_ENDPOINT.
    for name in ("OIDC_RP_CLIENT_ID", "OIDC_OP_TOKEN_ENDPOINT"):
        if hasattr(settings, name):
            delattr(settings, name)
    OIDCBackend()


@pytest.mark.django_db
def test_backend_get_user_refuses_inactive_users():
    from tests.factories import UserFactory

    user = UserFactory(is_active=False)
    assert OIDCBackend().get_user(user.pk) is None
    user.is_active = True
    user.save()
    assert OIDCBackend().get_user(user.pk) == user


def test_backend_path_finds_a_configured_subclass(settings):
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "tests.test_oidc_providers.MyBackend",
    ]
    assert backend_path() == "tests.test_oidc_providers.MyBackend"


class MyBackend(OIDCBackend):
    pass


# Dropped into mozilla-django-oidc's own urls (OIDC_AUTHENTICATE_CLASS / OIDC_CALLBACK_CLASS).


@pytest.mark.django_db
def test_drop_in_for_mozilla_django_oidc_urls(client, oidc_standin, settings):
    import mozilla_django_oidc.urls

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.OIDC_RP_CLIENT_ID = oidc_standin.client_id
    settings.OIDC_RP_CLIENT_SECRET = oidc_standin.client_secret
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_OP_DISCOVERY_URL = oidc_standin.discovery_url
    settings.OIDC_AUTHENTICATE_CLASS = "ephemeral_auth.oidc.views.OIDCAuthorizeView"
    settings.OIDC_CALLBACK_CLASS = "ephemeral_auth.oidc.views.OIDCCallbackView"
    settings.EPHEMERAL_AUTH_OIDC_CALLBACK_URL = "oidc_authentication_callback"
    mozilla_urls = reload(mozilla_django_oidc.urls)
    try:
        urlconf = types.ModuleType("dropin_urls")
        urlconf.urlpatterns = [path("oidc/", include(mozilla_urls))]
        settings.ROOT_URLCONF = urlconf
        start = client.get("/oidc/authenticate/", {"next": "/after/"})
        assert start.status_code == 302 and start["Location"].startswith(f"{oidc_standin.issuer}/authorize?")
        callback = oidc_standin.approve(start["Location"])
        assert callback.startswith("/oidc/callback/?")
        assert client.get(callback)["Location"] == "/after/"
        assert client.session[SESSION_KEY]
    finally:
        del settings.OIDC_AUTHENTICATE_CLASS, settings.OIDC_CALLBACK_CLASS
        reload(mozilla_django_oidc.urls)


# The "Sign in with ..." buttons.


def render(template: str, request) -> str:
    return Template(template).render(Context({"request": request}))


@pytest.mark.django_db
def test_buttons_link_each_provider_with_next(oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(),
        "second": oidc_standin.provider_settings(name="Second"),
    }
    request = RequestFactory().get("/accounts/login/", {"next": "/private/"})
    html = render('{% include "ephemeral_auth/oidc/buttons.html" %}', request)
    assert 'href="/api/auth/oidc/standin/authorize/?next=%2Fprivate%2F"' in html
    assert "Sign in with Stand-in" in html and "Sign in with Second" in html


def test_buttons_ignore_an_unsafe_next_and_show_errors(oidc_standin):
    request = RequestFactory().get("/accounts/login/", {"next": "https://evil.example/", "oidc_error": "invalid_state"})
    html = render('{% include "ephemeral_auth/oidc/buttons.html" %}', request)
    assert "evil.example" not in html and "next=%2Faccounts%2Flogin%2F" in html
    assert 'data-oidc-error="invalid_state"' in html and "expired or was already used" in html


def test_no_buttons_without_providers(settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    assert render('{% include "ephemeral_auth/oidc/buttons.html" %}', RequestFactory().get("/")).strip() == ""
