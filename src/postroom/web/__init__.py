"""The admin web UI (Settings → Email): server-rendered pages, sessions, CSRF, presets.

``install_web(api, postroom)`` mounts it on the FastAPI app; ``setup_url(postroom)`` makes
the one-time link that creates the first admin.
"""

from postroom.web.router import create_web_router, install_web
from postroom.web.setup import setup_url

__all__ = ["create_web_router", "install_web", "setup_url"]
