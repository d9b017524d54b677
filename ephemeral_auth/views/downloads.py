"""Placeholder: the views of this area are not written yet."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
