"""Signal receivers connected when the app is ready (see apps.py)."""

from __future__ import annotations
