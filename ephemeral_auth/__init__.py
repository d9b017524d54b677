"""Database-backed short-lived authentication state for Django."""

__version__ = "0.1.0"
