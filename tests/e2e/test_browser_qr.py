"""The TOTP QR code as Chromium displays it: screenshot, decode with zbarimg, compare with the key shown.

The example page sizes the code with CSS (``.qr svg`` in
example_project/templates/ephemeral_auth/base.html); the JSON API's
``qr_svg`` (``POST 2fa/totp/setup/``, docs/http-api.md) is placed on a page
at a small and a large size. Each time the element is screenshotted as
displayed and read with ``zbarimg --raw`` (Debian's zbar-tools): an SVG that
the page crops instead of scaling yields nothing.

The browser, the account and the sign-in steps are those of
test_browser_two_factor.py (imported, not copied).

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_browser_qr.py``.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.servers import JsonClient
from tests.e2e.test_browser_two_factor import page, person, sign_in  # noqa: F401 (fixtures)
from tests.factories import PASSWORD
from tests.test_totp_qr import zbar_decode

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def otpauth_secret(uri: str) -> str:
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp"), uri
    (secret,) = parse_qs(parts.query)["secret"]
    return secret


def drawn_width(locator) -> float:
    """How wide the inline SVG draws its viewBox on screen (0 without a viewBox): scaled, not cropped."""
    return float(locator.evaluate("svg => svg.getScreenCTM().a * svg.viewBox.baseVal.width"))


def decode_element(locator, path) -> list[str]:
    """Screenshot ``locator`` as displayed (scrolled into view, clipped as the page clips it); decode it."""
    locator.screenshot(path=str(path))
    return zbar_decode(path)


def test_enrolment_page_qr_code_scans_to_the_key_shown(person, live_server, page, tmp_path):  # noqa: F811
    base = live_server.url
    sign_in(page, base, person.username)
    page.wait_for_url(base + "/")
    page.click("#link-totp")
    page.click("button[value=start]")
    secret = page.inner_text("#totp-secret").strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)

    qr = page.locator(".qr svg")
    box = qr.bounding_box()
    assert box is not None and box["width"] == pytest.approx(box["height"], abs=1), box
    assert drawn_width(qr) == pytest.approx(box["width"], abs=1)
    decoded = decode_element(qr, tmp_path / "page.png")
    assert len(decoded) == 1, f"zbarimg read {decoded!r} from the displayed QR code"
    assert otpauth_secret(decoded[0]) == secret
    assert urlsplit(decoded[0]).path.endswith(person.username)


@pytest.mark.parametrize("size", [120, 600])
def test_api_qr_svg_scans_at_any_displayed_size(person, live_server, page, tmp_path, size):  # noqa: F811
    client = JsonClient(live_server.url)
    login = client.post("/api/auth/login/", {"username": person.username, "password": PASSWORD})
    assert login.status_code == 200 and login.json()["status"] == "authenticated", login.text
    # Django rotates the CSRF token at login: fetch the session's new one.
    client.csrf = client.http.get(f"{live_server.url}/api/auth/csrf/", timeout=10).json()["csrf_token"]
    answer = client.post("/api/auth/2fa/totp/setup/", {"password": PASSWORD})
    assert answer.status_code == 200, answer.text
    setup = answer.json()
    assert otpauth_secret(setup["provisioning_uri"]) == setup["secret"]

    # As an <img> (the SVG is a document of its own) and inline (the page's CSS sizes it), both to `size` px.
    image = "data:image/svg+xml;base64," + base64.b64encode(setup["qr_svg"].encode()).decode()
    page.set_content(
        f"<!doctype html><style>body{{margin:1rem;background:#fff}} .inline svg{{width:{size}px;height:auto}}</style>"
        f'<img id="as-img" alt="" src="{image}" style="width:{size}px;height:{size}px;display:block">'
        f'<div class="inline" style="display:inline-block;margin-top:1rem">{setup["qr_svg"]}</div>'
    )
    page.wait_for_function("document.getElementById('as-img').complete")
    for name, locator in (("img", page.locator("#as-img")), ("inline", page.locator(".inline svg"))):
        box = locator.bounding_box()
        assert box is not None and (round(box["width"]), round(box["height"])) == (size, size), (name, box)
        if name == "inline":
            assert drawn_width(locator) == pytest.approx(size, abs=1)
        decoded = decode_element(locator, tmp_path / f"{name}-{size}.png")
        assert decoded == [setup["provisioning_uri"]], (name, size, decoded)
        assert otpauth_secret(decoded[0]) == setup["secret"]
