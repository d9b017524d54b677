"""A fixed set of demo files (no model: the demo needs no migrations)."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import Http404

__all__ = ["FILES", "DemoFile", "get_file"]


@dataclass(frozen=True)
class DemoFile:
    pk: int
    name: str
    content_type: str
    text: str

    def render(self, username: str) -> bytes:
        """Return the file's bytes; the text names who it was served to."""
        return self.text.format(username=username).encode("utf-8")


FILES: dict[int, DemoFile] = {
    f.pk: f
    for f in (
        DemoFile(1, "benchy.gcode", "text/plain", "; demo G-code served to {username}\nG28\nG1 X10 Y10 Z0.3\n"),
        DemoFile(2, "notes.txt", "text/plain", "Demo notes, served to {username}.\n"),
        DemoFile(3, "cube.stl", "model/stl", "solid cube_for_{username}\nendsolid\n"),
    )
}


def get_file(pk: int) -> DemoFile:
    """Return the demo file ``pk`` or raise Http404."""
    try:
        return FILES[int(pk)]
    except (KeyError, ValueError) as exc:
        raise Http404("no such file") from exc
