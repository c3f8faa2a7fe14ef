"""The REST API under ``/api/v1``: ``create_app(postroom)`` builds it."""

from postroom.api.app import create_app

__all__ = ["create_app"]
