"""Malformed WebAuthn answers: always InvalidInput (a 400), never a 500, and nothing consumed.

Each case spoils one part of an otherwise valid answer of the software
authenticator; hypothesis then throws arbitrary JSON at both ceremonies.
"""

from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ephemeral_auth.exceptions import InvalidCode, InvalidInput, InvalidToken
from ephemeral_auth.models import EphemeralToken, WebAuthnCredential
from ephemeral_auth.services import webauthn
from tests.webauthn_authenticator import SoftAuthenticator, b64, cbor_encode

pytestmark = pytest.mark.django_db

BROWSER = "browser"


@pytest.fixture(autouse=True)
def relying_party(settings):
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "example.com"
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = ["https://example.com"]
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = True


def client_data(**fields):
    body = {"type": "webauthn.get", "challenge": b64(b"c" * 32), "origin": "https://example.com"}
    body.update(fields)
    return b64(json.dumps({k: v for k, v in body.items() if v is not ...}).encode())


def set_path(answer, path, value):
    target = answer
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value


# Spoils shared by both ceremonies: (path, value); ``...`` removes the key.
COMMON = [
    (("rawId",), ...),
    (("rawId",), None),
    (("rawId",), 42),
    (("rawId",), ""),
    (("rawId",), "not base64!"),
    (("rawId",), "QUJD="),  # padded
    (("rawId",), "QUJE"[:3] + "F"),  # non-canonical trailing bits ("QUJF" decodes like "QUJE")
    (("rawId",), "A"),  # impossible length
    (("rawId",), b64(b"x" * 1024)),  # longer than a credential id may be
    (("rawId",), "QUJD\x00"),
    (("id",), "c29tZXRoaW5nIGVsc2U"),  # id differs from rawId
    (("type",), "password"),
    (("type",), ["public-key"]),
    (("response",), ...),
    (("response",), "text"),
    (("response",), []),
    (("response", "clientDataJSON"), ...),
    (("response", "clientDataJSON"), 7),
    (("response", "clientDataJSON"), "%%%"),
    (("response", "clientDataJSON"), b64(b"not json")),
    (("response", "clientDataJSON"), b64(b"\xff\xfe")),
    (("response", "clientDataJSON"), b64(b"[1, 2]")),
    (("response", "clientDataJSON"), b64(b"[" * 5000)),
    (("response", "clientDataJSON"), b64(b"x" * 5000)),
    (("response", "clientDataJSON"), client_data(challenge=...)),
    (("response", "clientDataJSON"), client_data(challenge=12)),
    (("response", "clientDataJSON"), client_data(challenge="with spaces")),
    (("response", "clientDataJSON"), client_data(challenge="QUJD=")),
    (("response", "clientDataJSON"), client_data(challenge=b64(b"c" * 200))),
    (("response", "clientDataJSON"), client_data(origin=["https://example.com"])),
    (("response", "clientDataJSON"), client_data(type=None)),
    (("response", "clientDataJSON"), client_data(crossOrigin="no")),
]

REGISTRATION = [
    *COMMON,
    (("response", "attestationObject"), ...),
    (("response", "attestationObject"), b64(b"\xff" * 40)),
    (("response", "attestationObject"), b64(cbor_encode([1, 2, 3]))),
    (("response", "attestationObject"), b64(cbor_encode({"fmt": "none", "attStmt": {}}))),
    (("response", "attestationObject"), b64(cbor_encode({"fmt": "none", "attStmt": {}, "authData": b"short"}))),
    (("response", "attestationObject"), b64(cbor_encode({"fmt": "none", "attStmt": {}, "authData": b"\0" * 37}))),
    (("response", "attestationObject"), b64(b"\x9f" * 3000)),
    (("response", "transports"), "usb"),
    (("response", "transports"), ["usb"] * 50),
    (("clientExtensionResults",), "rk"),
    (("clientExtensionResults",), {"credProps": {"rk": "yes"}}),
]

AUTHENTICATION = [
    *COMMON,
    (("response", "authenticatorData"), ...),
    (("response", "authenticatorData"), b64(b"short")),
    (("response", "authenticatorData"), b64(b"\0" * 37 + b"trailing")),
    (("response", "authenticatorData"), b64(b"\0" * 32 + b"\x80" + b"\0" * 4 + b"\xa1")),  # ED flag, truncated CBOR
    (("response", "signature"), ...),
    (("response", "signature"), ""),
    (("response", "signature"), {"r": 1}),
    (("response", "userHandle"), 5),
    (("response", "userHandle"), b64(b"h" * 65)),
    (("response", "userHandle"), "=="),
]


def _registration(user):
    options = webauthn.begin_registration(user, browser_challenge=BROWSER)
    return SoftAuthenticator().create(options)


def _authentication(user):
    authenticator = SoftAuthenticator()
    options = webauthn.begin_registration(user, browser_challenge=BROWSER)
    webauthn.complete_registration(user, authenticator.create(options), browser_challenge=BROWSER, name="k")
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    return authenticator.get(options)


@pytest.mark.parametrize(("path", "value"), REGISTRATION, ids=[f"{'.'.join(p)}={v!r:.30}" for p, v in REGISTRATION])
def test_malformed_registration_answers(user, path, value):
    answer = _registration(user)
    set_path(answer, path, value)
    with pytest.raises(InvalidInput):
        webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name="k")
    assert EphemeralToken.objects.count() == 1  # nothing consumed
    assert not WebAuthnCredential.objects.exists()


@pytest.mark.parametrize(("path", "value"), AUTHENTICATION, ids=[f"{'.'.join(p)}={v!r:.30}" for p, v in AUTHENTICATION])
def test_malformed_authentication_answers(user, path, value):
    answer = _authentication(user)
    set_path(answer, path, value)
    with pytest.raises(InvalidInput):
        webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)
    assert EphemeralToken.objects.count() == 1


@pytest.mark.parametrize(
    "answer",
    [None, 1, 1.5, True, [], "", "{", "[]", "null", '"x"', b"\xff", "\ud800", "x" * 70_000, {"a": 1}, {"response": {}}],
)
def test_answers_that_are_not_objects(user, answer):
    webauthn.begin_registration(user, browser_challenge=BROWSER)
    with pytest.raises(InvalidInput):
        webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name="k")
    with pytest.raises(InvalidInput):
        webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)
    assert EphemeralToken.objects.count() == 1


def test_an_answer_as_json_text_is_accepted(user):
    answer = _registration(user)
    credential = webauthn.complete_registration(user, json.dumps(answer), browser_challenge=BROWSER, name="k")
    assert credential.pk


@pytest.mark.parametrize("name", [None, 3, "", " ", "a\x00", "x" * 65, "\x1b[31mred", "\ud800"])
def test_a_bad_name_is_refused_before_the_challenge_is_used(user, name):
    answer = _registration(user)
    with pytest.raises(InvalidInput):
        webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name=name)
    assert EphemeralToken.objects.count() == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
b64_field = st.one_of(st.binary(max_size=80).map(b64), st.text(max_size=40), json_values)


@st.composite
def answers(draw):
    """Arbitrary JSON, and answers of the right shape whose fields are anything."""
    if draw(st.booleans()):
        return draw(json_values)
    names = ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle", "transports"]
    response = draw(st.dictionaries(st.sampled_from(names), b64_field))
    if draw(st.booleans()):
        fields = st.sampled_from(["type", "challenge", "origin", "crossOrigin"])
        values = json_values | st.binary(max_size=40).map(b64)
        response["clientDataJSON"] = client_data(**draw(st.dictionaries(fields, values)))
    return {"rawId": draw(b64_field), "type": "public-key", "response": response}


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(answer=answers())
def test_fuzzed_answers_never_raise_anything_else(answer):
    for call in (
        lambda: webauthn.complete_registration(
            _fuzz_user(), copy.deepcopy(answer), browser_challenge=BROWSER, name="k"
        ),
        lambda: webauthn.complete_authentication(copy.deepcopy(answer), browser_challenge=BROWSER),
    ):
        try:
            call()
        except (InvalidInput, InvalidToken, InvalidCode):
            pass


def _fuzz_user():
    from tests.factories import UserFactory

    return UserFactory.build(pk=10**9)
