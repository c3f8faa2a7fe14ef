"""`postroom oauth2 …`: OAuth2 configurations, connecting them, and their status."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, urlsplit

import typer

from postroom.cli._common import (
    CLI_ACTOR,
    err,
    fail,
    group,
    handle_errors,
    opened,
    print_json,
    read_document,
    read_secret,
    table,
)

if TYPE_CHECKING:
    from postroom.oauth2.flows import Connected
    from postroom.oauth2.schemas import Grant, OAuth2ConfigRead, OAuth2Status
    from postroom.oauth2.service import OAuth2Lifecycle

oauth2_app = group("Manage OAuth2 configurations used by profiles.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Opt = typer.Option


def _print(c: OAuth2ConfigRead) -> None:
    typer.echo(
        "\n".join(
            [
                f"OAuth2 configuration: {c.name}",
                f"  provider:      {c.provider}",
                f"  grant:         {c.grant}",
                f"  client id:     {c.client_id}",
                f"  client secret: {'set' if c.client_secret_set else 'not set'}",
                f"  tenant:        {c.tenant or '-'}",
                f"  authorize URL: {c.authorize_url or '(provider default)'}",
                f"  token URL:     {c.token_url or '(provider default)'}",
                f"  device URL:    {c.device_authorization_url or '(provider default)'}",
                f"  scopes:        {' '.join(c.scopes) or '(provider default)'}",
                f"  mailbox:       {c.username or '-'}",
                f"  used by:       {', '.join(c.used_by) or 'no profile'}",
            ]
        )
    )


def add_or_edit(
    ctx: typer.Context,
    name: str,
    provider: Annotated[str | None, Opt(help="google | microsoft | generic")] = None,
    grant: Annotated[
        str | None, Opt(help="authorization_code | device_code | client_credentials")
    ] = None,
    client_id: Annotated[
        str | None, Opt("--client-id", help="The application's client id.")
    ] = None,
    client_secret_stdin: Annotated[
        bool, Opt("--client-secret-stdin", help="Read the client secret from stdin.")
    ] = False,
    client_secret_env: Annotated[
        str | None,
        Opt(
            "--client-secret-env", metavar="VAR", help="Read the client secret from this variable."
        ),
    ] = None,
    tenant: Annotated[str | None, Opt(help="Microsoft tenant (id or domain).")] = None,
    authorize_url: Annotated[
        str | None, Opt("--authorize-url", help="Authorization endpoint (generic).")
    ] = None,
    token_url: Annotated[str | None, Opt("--token-url", help="Token endpoint (generic).")] = None,
    device_url: Annotated[
        str | None, Opt("--device-authorization-url", help="RFC 8628 endpoint (generic).")
    ] = None,
    scope: Annotated[list[str] | None, Opt("--scope", help="Repeat for several scopes.")] = None,
    username: Annotated[
        str | None, Opt("--username", help="The mailbox the token signs in as.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create (add) or change (edit) an OAuth2 configuration."""
    data: dict[str, Any] = {"name": name}
    for key, value in [
        ("provider", provider),
        ("grant", grant),
        ("client_id", client_id),
        ("tenant", tenant),
        ("authorize_url", authorize_url),
        ("token_url", token_url),
        ("device_authorization_url", device_url),
        ("scopes", scope or None),
        ("username", username),
    ]:
        if value is not None:
            data[key] = value
    secret = read_secret(
        stdin=client_secret_stdin,
        env=client_secret_env,
        prompt="Client secret (empty for none)" if ctx.info_name == "add" else None,
        field="client_secret",
    )
    if secret:
        data["client_secret"] = secret
    with opened() as app:
        if ctx.info_name == "edit":
            c = app.oauth2.update(name, data, actor=CLI_ACTOR, operator=True)
        else:
            c = app.oauth2.create(data, actor=CLI_ACTOR, operator=True)
    if as_json:
        print_json(c)
    else:
        verb = "Updated" if ctx.info_name == "edit" else "Created"
        typer.echo(f"{verb} OAuth2 configuration '{c.name}'.")


oauth2_app.command("add")(handle_errors(add_or_edit))
oauth2_app.command("edit")(handle_errors(add_or_edit))


@oauth2_app.command("list")
@handle_errors
def list_configs(as_json: JsonOpt = False) -> None:
    """List OAuth2 configurations."""
    with opened() as app:
        configs = app.oauth2.list()
    if as_json:
        print_json(configs)
    elif not configs:
        typer.echo("No OAuth2 configurations. Create one with `postroom oauth2 add NAME …`.")
    else:
        rows = [
            [c.name, c.provider, c.grant, c.username or "-", ", ".join(c.used_by) or "-"]
            for c in configs
        ]
        typer.echo(table(rows, ["name", "provider", "grant", "mailbox", "used by"]))


@oauth2_app.command("show")
@handle_errors
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show one OAuth2 configuration (the client secret only as 'set')."""
    with opened() as app:
        c = app.oauth2.get(name)
    print_json(c) if as_json else _print(c)


@oauth2_app.command("delete")
@handle_errors
def delete(name: str) -> None:
    """Delete an OAuth2 configuration no profile uses."""
    with opened() as app:
        app.oauth2.delete(name, actor=CLI_ACTOR)
    typer.echo(f"Deleted OAuth2 configuration '{name}'.")


@oauth2_app.command("apply")
@handle_errors
def apply(
    file: Annotated[str, typer.Option("-f", "--file", help="JSON or YAML file; '-' = stdin.")],
    as_json: JsonOpt = False,
) -> None:
    """Create or update an OAuth2 configuration (by name) from a JSON or YAML file."""
    data = read_document(file)
    with opened() as app:
        c, created = app.oauth2.apply(data, actor=CLI_ACTOR, operator=True)
    if as_json:
        print_json(c)
    else:
        typer.echo(f"{'Created' if created else 'Updated'} OAuth2 configuration '{c.name}'.")


# -- connecting and status ----------------------------------------------------------------------

_CONNECT_WAIT_S = 600.0


def _print_status(st: OAuth2Status) -> None:
    def when(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value else "-"

    lines = [
        f"OAuth2 configuration: {st.name} ({st.provider}, {st.grant})",
        f"  state:          {st.state}"
        + ("  <- reconnect: postroom oauth2 connect " + st.name if st.consent_needed else ""),
        f"  account:        {st.account or '-'}",
        f"  SASL user:      {st.username or st.account or '-'}",
        f"  scopes:         {' '.join(st.scopes) or '-'}",
        f"  access token:   {'valid until ' + when(st.access_token_expires_at) if st.access_token_expires_at else 'none cached'}",
        f"  last refresh:   {when(st.last_refresh_at)}",
        f"  connected:      {when(st.connected_at)}",
    ]
    if st.last_error:
        said = st.last_error.error + (
            f": {st.last_error.error_description}" if st.last_error.error_description else ""
        )
        lines.append(f"  last error:     {said} ({when(st.last_error.at)})")
    if st.retry_after:
        lines.append(f"  retry after:    {when(st.retry_after)}")
    if st.paused_profiles:
        lines.append(f"  paused:         deliveries of {', '.join(st.paused_profiles)} wait")
    typer.echo("\n".join(lines))


@oauth2_app.command("status")
@handle_errors
def status(name: str, as_json: JsonOpt = False) -> None:
    """Account, scopes, access token expiry, last refresh and consent state (no tokens)."""
    with opened() as app:
        st = app.oauth2_lifecycle.status(name)
    print_json(st) if as_json else _print_status(st)


async def _browser_flow(
    lifecycle: OAuth2Lifecycle, name: str, *, paste: bool, port: int, redirect: str | None
) -> Connected:
    import asyncio

    from postroom.oauth2.loopback import LoopbackReceiver
    from postroom.oauth2.protocol import parse_redirect

    if paste:
        uri = redirect or "http://localhost:1/"
        start = await lifecycle.flows.start_authorization(name, redirect_uri=uri, actor=CLI_ACTOR)
        typer.echo(f"Open this URL in a browser and sign in:\n\n  {start.authorization_url}\n")
        typer.echo(
            "The browser then goes to a page that may not load; copy its full address "
            "from the address bar and paste it here (or just the code).",
            err=True,
        )
        pasted = await asyncio.to_thread(sys.stdin.readline)
        code, state, error = parse_redirect(pasted)
        state = state or parse_qs(urlsplit(start.authorization_url).query)["state"][0]
        return await lifecycle.flows.complete_authorization(
            state=state, code=code, error=error.get("error"),
            error_description=error.get("error_description"),
        )  # fmt: skip
    async with LoopbackReceiver(port=port) as receiver:
        start = await lifecycle.flows.start_authorization(
            name, redirect_uri=redirect or receiver.redirect_uri, actor=CLI_ACTOR
        )
        typer.echo(f"Open this URL in a browser and sign in:\n\n  {start.authorization_url}\n")
        typer.echo(f"Waiting for the browser to return to {start.redirect_uri} …", err=True)
        try:
            params = await receiver.wait(timeout=_CONNECT_WAIT_S)
        except TimeoutError:
            fail("Nobody signed in within 10 minutes. Run the command again.")
    return await lifecycle.flows.complete_authorization(
        state=params.get("state", ""), code=params.get("code"), error=params.get("error"),
        error_description=params.get("error_description"),
    )  # fmt: skip


async def _device_flow(lifecycle: OAuth2Lifecycle, name: str) -> Connected:
    import asyncio

    start = await lifecycle.flows.start_device(name, actor=CLI_ACTOR)
    where = start.verification_uri_complete or start.verification_uri
    typer.echo(f"Open {where} and enter the code:\n\n  {start.user_code}\n")
    typer.echo("Waiting for the sign-in …", err=True)
    while True:
        await asyncio.sleep(start.interval_s)
        done = await lifecycle.flows.poll_device(name)
        if done is not None:
            return done


async def _connect(
    lifecycle: OAuth2Lifecycle, name: str, grant: Grant, *, paste: bool, port: int,
    redirect: str | None,
) -> Connected:  # fmt: skip
    from postroom.oauth2.schemas import Grant

    if grant is Grant.AUTHORIZATION_CODE:
        return await _browser_flow(lifecycle, name, paste=paste, port=port, redirect=redirect)
    if grant is Grant.DEVICE_CODE:
        return await _device_flow(lifecycle, name)
    return await lifecycle.flows.connect_client_credentials(name, actor=CLI_ACTOR)


@oauth2_app.command("connect")
@handle_errors
def connect(
    name: str,
    paste: Annotated[
        bool,
        Opt("--paste", help="Don't listen on a local port: paste the redirect URL (or code)."),
    ] = False,
    port: Annotated[int, Opt("--port", help="Local port for the redirect (0 = any free one).")] = 0,
    redirect_uri: Annotated[
        str | None,
        Opt("--redirect-uri", help="Redirect URI to use instead of http://localhost:PORT/."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Connect (sign in) an OAuth2 configuration: browser, device code or app-only token."""
    import asyncio

    from postroom.oauth2.errors import FlowError, TokenError

    with opened() as app:
        grant = app.oauth2.get(name).grant
        lifecycle = app.oauth2_lifecycle
        try:
            done = asyncio.run(
                _connect(lifecycle, name, grant, paste=paste, port=port, redirect=redirect_uri)
            )
        except (TokenError, FlowError) as exc:
            fail(exc.message)
        st = lifecycle.status(name)
    if as_json:
        print_json(st)
    else:
        who = f" as {done.account}" if done.account else ""
        typer.echo(f"Connected OAuth2 configuration '{done.config}'{who}.")
    if not st.username and not done.account:
        err(f"No mailbox is known for '{done.config}': set it with `postroom oauth2 edit "
            f"{done.config} --username ADDRESS`.")  # fmt: skip
    elif st.username and done.account and st.username.lower() != done.account.lower():
        err(f"Note: the configuration's username is {st.username}, but {done.account} signed "
            "in; SMTP and IMAP sign in as the username, so the server may refuse the token.")  # fmt: skip
