"""A separate postroom process for OAuth2 tests: ``python -m tests.harness.oauth2_child MODE …``.

Modes (arguments: data dir, database URL or '', configuration name, lease seconds):

* ``token`` -- get an access token; print its SHA-256 (never the token);
* ``die-before-store`` -- refresh, and die (``os._exit(9)``) after the token endpoint answered
  but before the answer is stored: what a power cut or SIGKILL at the worst moment does.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from typing import Any

from postroom import Postroom
from postroom.oauth2.store import TokenStore
from postroom.settings import Settings


def main() -> None:
    mode, data_dir, url, name, lease = sys.argv[1:6]
    app = Postroom.open(settings=Settings(data_dir=data_dir, database_url=url or None))
    tokens = app.oauth2_lifecycle.tokens
    tokens.lease_s = float(lease)
    if mode == "die-before-store":

        def die(*args: Any, **kwargs: Any) -> bool:
            os._exit(9)

        TokenStore.save_refreshed = die  # type: ignore[method-assign]
    token = asyncio.run(tokens.access_token(name))
    print(hashlib.sha256(token.token.encode()).hexdigest(), flush=True)
    app.close()


if __name__ == "__main__":
    main()
