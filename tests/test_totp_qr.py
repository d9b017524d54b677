"""The TOTP QR code (``totp.qr_svg``): an SVG that scales to any size and still scans.

The SVG's module grid is read back from its path data and checked against
the QR layout (quiet zone, finder and timing patterns); when ``zbarimg``
(Debian's zbar-tools, installed by .ci/e2e-setup.sh) is on the PATH, the grid
is rasterised to a PNG (pure Python) and decoded, so the otpauth URI
round-trips through a real barcode reader. tests/e2e/test_browser_qr.py does
the same with the SVG as Chromium displays it.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

import pytest

from ephemeral_auth.services import totp
from ephemeral_auth.services.two_factor import Proof
from tests.factories import UserFactory

SVG_NS = "http://www.w3.org/2000/svg"
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
QUIET_ZONE = 4  # modules, ISO/IEC 18004
MODULE_PX = 5  # the natural size qr_svg gives: width = modules * 5 px

# One run of dark modules as qr_svg draws it: a unit-high rectangle.
RUN = re.compile(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z")

URIS = [
    "otpauth://totp/x?secret=" + SECRET,
    "otpauth://totp/ephemeral_auth%20demo:alice?secret=" + SECRET + "&issuer=ephemeral_auth%20demo",
    # A long name: a larger QR version, still a square grid.
    "otpauth://totp/Example:" + "a" * 150 + "%40example.com?secret=" + SECRET + "&issuer=Example",
    # Characters that would need escaping if they reached the markup (they must not: only modules do).
    'otpauth://totp/<b>&"x"?secret=' + SECRET,
]


def zbar_decode(image: Path) -> list[str]:
    """Decode every barcode in ``image`` with ``zbarimg --raw``; [] when none is found.

    Skips the calling test when zbarimg is missing (run ``bash .ci/e2e-setup.sh``).
    """
    zbarimg = shutil.which("zbarimg")
    if zbarimg is None:
        pytest.skip("zbarimg is not installed (Debian zbar-tools; bash .ci/e2e-setup.sh)")
    done = subprocess.run(
        [zbarimg, "--raw", "--quiet", "-Sdisable", "-Sqrcode.enable", str(image)],
        capture_output=True, timeout=60, check=False,
    )
    # zbarimg exits 4 when it finds no barcode; anything else but 0 is an error of its own.
    assert done.returncode in (0, 4), done.stderr.decode(errors="replace")
    return [line for line in done.stdout.decode("utf-8").splitlines() if line]


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)  # our own output, not untrusted input


def view_box(root: ElementTree.Element) -> tuple[int, int, int, int]:
    x, y, width, height = (int(v) for v in root.attrib["viewBox"].split())
    return x, y, width, height


def modules(svg: str) -> list[list[bool]]:
    """The module grid the SVG draws (True: dark), read from its path data, viewBox-sized."""
    root = parse(svg)
    _, _, size, _ = view_box(root)
    grid = [[False] * size for _ in range(size)]
    (path,) = root.findall(f"{{{SVG_NS}}}path")
    data = path.attrib["d"]
    assert RUN.sub("", data) == "", "the path holds only unit-high rectangles"
    for x, y, length, back in ((int(g) for g in m.groups()) for m in RUN.finditer(data)):
        assert length == back and length > 0
        assert 0 <= y < size and 0 <= x and x + length <= size, "every module lies inside the viewBox"
        for column in range(x, x + length):
            assert not grid[y][column], "no module is drawn twice"
            grid[y][column] = True
    return grid


def write_png(grid: list[list[bool]], path: Path, *, scale: int = 4) -> None:
    """Rasterise a module grid to a greyscale PNG, ``scale`` pixels a module (no Pillow)."""
    rows = b""
    for row in grid:
        line = b"\x00" + b"".join((b"\x00" if dark else b"\xff") * scale for dark in row)
        rows += line * scale
    width = height = len(grid) * scale

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def finder_at(grid: list[list[bool]], top: int, left: int) -> bool:
    """Whether a 7x7 finder pattern (dark ring, light ring, 3x3 dark core) starts at (top, left)."""
    for dy in range(7):
        for dx in range(7):
            ring = max(abs(dy - 3), abs(dx - 3))
            if grid[top + dy][left + dx] != (ring != 2):
                return False
    return True


@pytest.mark.parametrize("uri", URIS)
def test_the_view_box_spans_the_module_grid_and_its_quiet_zone(uri):
    svg = totp.qr_svg(uri)
    root = parse(svg)
    assert root.tag == f"{{{SVG_NS}}}svg"
    x, y, width, height = view_box(root)
    assert (x, y) == (0, 0) and width == height
    symbol = width - 2 * QUIET_ZONE
    assert 21 <= symbol <= 177 and (symbol - 17) % 4 == 0, "a QR version's size (17 + 4v modules), not Micro QR"
    # The natural size: a whole number of pixels a module, the same in both directions.
    assert root.attrib["width"] == root.attrib["height"] == str(width * MODULE_PX)
    assert root.attrib["shape-rendering"] == "crispEdges"
    # The white background covers the whole viewBox (the code scans on a dark page too).
    (background,) = root.findall(f"{{{SVG_NS}}}rect")
    assert background.attrib == {"width": str(width), "height": str(width), "fill": "#fff"}
    assert len(modules(svg)) == width


@pytest.mark.parametrize("uri", URIS)
def test_quiet_zone_is_light_and_finder_patterns_sit_in_the_corners(uri):
    grid = modules(totp.qr_svg(uri))
    size = len(grid)
    for index, row in enumerate(grid):
        if index < QUIET_ZONE or index >= size - QUIET_ZONE:
            assert not any(row)
        else:
            assert not any(row[:QUIET_ZONE]) and not any(row[size - QUIET_ZONE:])
    far = size - QUIET_ZONE - 7
    assert finder_at(grid, QUIET_ZONE, QUIET_ZONE)
    assert finder_at(grid, QUIET_ZONE, far)
    assert finder_at(grid, far, QUIET_ZONE)
    assert not finder_at(grid, far, far)
    # Timing patterns: alternating modules on row and column 6 of the symbol, between the finders.
    timing = QUIET_ZONE + 6
    for i in range(QUIET_ZONE + 8, size - QUIET_ZONE - 8):
        assert grid[timing][i] == grid[i][timing] == ((i - QUIET_ZONE) % 2 == 0)


@pytest.mark.parametrize("uri", URIS)
def test_svg_is_plain_markup_without_scripts_or_foreign_content(uri):
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<!" not in svg  # no declaration, doctype, entity or comment
    root = parse(svg)
    elements = list(root.iter())
    assert {element.tag for element in elements} <= {f"{{{SVG_NS}}}{name}" for name in ("svg", "rect", "path")}
    for element in elements:
        for name, value in element.attrib.items():
            assert not name.lower().startswith("on"), name
            assert "href" not in name.lower() and "style" not in name.lower(), name
            assert "javascript:" not in value.lower() and "url(" not in value.lower()
        assert not (element.text or "").strip() and not (element.tail or "").strip()
    # The data is in the modules only, never as text of the markup.
    assert SECRET not in svg and "otpauth" not in svg


@pytest.mark.parametrize("uri", URIS)
def test_otpauth_uri_round_trips_through_a_barcode_reader(uri, tmp_path):
    image = tmp_path / "qr.png"
    write_png(modules(totp.qr_svg(uri)), image)
    assert zbar_decode(image) == [uri]


@pytest.mark.django_db
def test_enrolment_qr_code_carries_the_enrolment_secret(tmp_path):
    user = UserFactory()
    setup = totp.setup(user, proof=Proof.trusted_caller())
    image = tmp_path / "setup.png"
    write_png(modules(setup.qr_svg), image, scale=3)
    (decoded,) = zbar_decode(image)
    assert decoded == setup.provisioning_uri
    parts = urlsplit(decoded)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parse_qs(parts.query)["secret"] == [setup.secret]
