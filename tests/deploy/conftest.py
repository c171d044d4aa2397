"""Fixtures of the deployment tests."""

from definitions_kit import imported

__all__ = ["imported"]
