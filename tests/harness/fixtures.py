"""pytest plugin: real Postfix + Dovecot for the whole test session.

Register with ``pytest_plugins = ["tests.harness.fixtures"]`` (or ``-p tests.harness.fixtures``).

Fixtures (session scope):

* ``harness_certs`` -- :class:`~tests.harness.certs.HarnessCerts` (CA + good/bad server certs);
* ``mail_servers`` -- a started :class:`~tests.harness.mailservers.MailServers`, whose Dovecot
  (and Postfix, through it) also accepts OAuth2 bearer tokens issued by ``oauth2_server``;
* ``cyrus`` -- a started :class:`~tests.harness.cyrus.CyrusServer` (Cyrus IMAP, from the
  unpacked Debian package);
* ``exim`` -- a started :class:`~tests.harness.exim.EximServer` (Exim, from the unpacked
  Debian package) that delivers alice's and bob's mail over LMTP into ``cyrus``, and every
  other local mailbox (e.g. the UTF-8 one) into a Maildir of its own;
* ``oauth2_port`` -- the loopback port reserved for the local authorization server;
* ``oauth2_server`` -- a started :class:`~tests.harness.oauth2server.LocalAuthServer` (Authlib)
  on ``oauth2_port``. Tests reset its knobs (``rotation``, ``access_lifetime``…) themselves.

If Postfix/Dovecot cannot run here (binary missing, not root) the tests that use
``mail_servers`` are skipped, unless ``POSTROOM_REQUIRE_SERVICES=1``: then they fail, naming
what is missing. After the session the servers are stopped; their directory (configuration,
logs, mailboxes) is deleted unless a test failed or ``POSTROOM_KEEP_MAIL_SERVERS=1``.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from . import cyrus as cyrus_harness
from . import exim as exim_harness
from .certs import HarnessCerts, generate_certs
from .mailservers import HarnessUnavailable, MailServers, check_available, introspection_url

if TYPE_CHECKING:
    from .oauth2server import LocalAuthServer

REQUIRE_ENV = "POSTROOM_REQUIRE_SERVICES"
KEEP_ENV = "POSTROOM_KEEP_MAIL_SERVERS"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mailservers: needs the real Postfix + Dovecot harness")
    config.addinivalue_line("markers", "exim: needs the real Exim + Cyrus IMAP harness")


def _unavailable(exc: HarnessUnavailable, what: str) -> None:
    """Fail under POSTROOM_REQUIRE_SERVICES=1 (CI), skip otherwise."""
    if _flag(REQUIRE_ENV):
        pytest.fail(
            f"{REQUIRE_ENV}=1 but {what} is unavailable: {exc.reason}. "
            "`make test` installs it (scripts/install-system-deps.sh, as root).",
            pytrace=False,
        )
    pytest.skip(f"{what} unavailable: {exc.reason} (`make test` installs it)")


def _keep_files(request: pytest.FixtureRequest) -> bool:
    return request.session.testsfailed > 0 or _flag(KEEP_ENV)


@pytest.fixture(scope="session")
def harness_certs(request: pytest.FixtureRequest) -> Iterator[HarnessCerts]:
    directory = tempfile.mkdtemp(prefix="postroom-certs-")
    yield generate_certs(directory)
    if not _keep_files(request):
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def oauth2_port() -> int:
    """A free loopback port for the authorization server, reserved before Dovecot starts so
    its introspection URL can be written into Dovecot's configuration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def oauth2_server(oauth2_port: int) -> Iterator[LocalAuthServer]:
    try:
        from .oauth2server import LocalAuthServer
    except ImportError as exc:  # Authlib is a test dependency
        pytest.skip(f"the local authorization server needs Authlib: {exc}")
    server = LocalAuthServer(port=oauth2_port).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mail_servers(
    request: pytest.FixtureRequest, harness_certs: HarnessCerts, oauth2_port: int
) -> Iterator[MailServers]:
    try:
        check_available()
    except HarnessUnavailable as exc:
        if _flag(REQUIRE_ENV):
            what = f"`{exc.binary}`" if exc.binary else "the mail server harness"
            pytest.fail(
                f"{REQUIRE_ENV}=1 but {what} is unavailable: {exc.reason}. "
                "`make test` installs Postfix and Dovecot (scripts/install-system-deps.sh, "
                "as root).",
                pytrace=False,
            )
        pytest.skip(f"real mail servers unavailable: {exc.reason} (`make test` installs them)")

    servers = MailServers(
        certs=harness_certs, oauth2_introspection_url=introspection_url(oauth2_port)
    )
    servers.start()  # a HarnessStartError here is a real failure, required or not
    try:
        yield servers
    finally:
        servers.stop()
        if _keep_files(request):
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"mail server files (logs, queue, Maildirs) kept in {servers.directory}"
                )
        else:
            servers.cleanup()


@pytest.fixture(scope="session")
def cyrus(
    request: pytest.FixtureRequest, harness_certs: HarnessCerts
) -> Iterator[cyrus_harness.CyrusServer]:
    try:
        cyrus_harness.check_available()
    except HarnessUnavailable as exc:
        _unavailable(exc, "Cyrus IMAP")
    server = cyrus_harness.CyrusServer(certs=harness_certs).start()
    try:
        yield server
    finally:
        server.stop()
        if not _keep_files(request):
            server.cleanup()


@pytest.fixture(scope="session")
def exim(
    request: pytest.FixtureRequest, harness_certs: HarnessCerts, cyrus: cyrus_harness.CyrusServer
) -> Iterator[exim_harness.EximServer]:
    try:
        exim_harness.check_available()
    except HarnessUnavailable as exc:
        _unavailable(exc, "Exim")
    server = exim_harness.EximServer(
        certs=harness_certs, lmtp_socket=cyrus.lmtp_socket, lmtp_users=tuple(cyrus.users)
    ).start()
    try:
        yield server
    finally:
        server.stop()
        if _keep_files(request):
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"Exim files (logs, spool, Maildirs) kept in {server.directory}"
                )
        else:
            server.cleanup()
