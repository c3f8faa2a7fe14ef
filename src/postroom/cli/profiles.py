"""`postroom profile …`, `bind`, `unbind`, `explain`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postroom.cli._common import (
    CLI_ACTOR,
    bad_input,
    err,
    group,
    handle_errors,
    opened,
    print_json,
    read_document,
    read_secret,
    table,
)

if TYPE_CHECKING:
    from postroom.diagnostics.steps import Diagnosis, Step
    from postroom.profiles.schemas import ProfileRead

profile_app = group("Manage email profiles (SMTP out, optional IMAP in).")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _timeout(value: str | None, field: str) -> float | None | str:
    """'none' (or 'null', '0'?) → no timeout; a number → seconds; absent → not given."""
    if value is None:
        return "unset"
    if value.strip().lower() in ("none", "null", ""):
        return None
    try:
        return float(value)
    except ValueError:
        bad_input(field, f"'{value}' is not a number of seconds (or 'none' for no timeout)")


def _pem_file(path: str, field: str) -> str:
    """The PEM text of ``path`` ('' clears the bundle); the schema checks it is PEM."""
    if not path:
        return ""
    from pathlib import Path

    try:
        return Path(path).read_text("ascii")
    except OSError as exc:
        bad_input(field, f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        bad_input(
            field,
            f"{path} is not PEM certificate text (-----BEGIN CERTIFICATE----- … "
            "-----END CERTIFICATE-----)",
        )


def _put(target: dict[str, Any], path: str, value: Any) -> None:
    if value is None or value == "unset":
        return
    section, _, key = path.rpartition(".")
    node = target
    if section:
        for part in section.split("."):
            node = node.setdefault(part, {})
    node[key] = value


def _print_profile(p: ProfileRead) -> None:
    lines = [
        f"Profile: {p.name}" + ("  [system default]" if p.is_default else ""),
        f"  enabled:        {'yes' if p.enabled else 'no'}",
        f"  version:        {p.version}",
    ]
    if p.description:
        lines.append(f"  description:    {p.description}")
    s = p.smtp
    lines += [
        f"  SMTP:           {s['host']}:{s['port']} security={s['security']} "
        f"verify_certificate={'yes' if s['verify_certificate'] else 'no'}"
        + (" (private CA)" if s.get("ca_bundle") else ""),
        f"  SMTP auth:      {s['auth']}"
        + (f" user={s['username']}" if s.get("username") else "")
        + (f" domain={s['auth_domain']}" if s.get("auth_domain") else "")
        + (f" oauth2={s['oauth2_config']}" if s.get("oauth2_config") else "")
        + (" password=set" if s.get("password_set") else ""),
        f"  timeouts:       connect={s['connect_timeout_s'] or 'none'} "
        f"send={s['send_timeout_s'] or 'none'}",
        "  sender:         "
        + (f'"{p.sender.from_name}" ' if p.sender.from_name else "")
        + f"<{p.sender.from_address}>"
        + (f" reply-to {p.sender.reply_to}" if p.sender.reply_to else ""),
    ]
    if p.imap:
        i = p.imap
        lines += [
            f"  IMAP:           {i['host']}:{i['port']} security={i['security']} "
            f"folder={i['folder']} processed={i['processed']}",
            f"  IMAP auth:      {i['auth']}"
            + (f" user={i['username']}" if i.get("username") else "")
            + (" password=set" if i.get("password_set") else ""),
        ]
    else:
        lines.append("  IMAP:           not configured")
    if p.email_actions_base_url:
        lines.append(f"  actions URL:    {p.email_actions_base_url}")
    lines.append(
        f"  limits:         {p.rate_limit_per_minute or 'no'} msg/min, "
        f"{p.max_connections} connections"
    )
    if p.last_test:
        result = "ok" if p.last_test.ok else f"failed ({p.last_test.error_code})"
        if p.last_test.stale:
            result += " — settings changed since, test again"
        lines.append(f"  last test:      {p.last_test.at:%Y-%m-%d %H:%M:%S} UTC, {result}")
    lines.append(
        "  last used:      "
        + (f"{p.last_used_at:%Y-%m-%d %H:%M:%S} UTC" if p.last_used_at else "never")
    )
    u = p.usage
    lines.append(
        f"  usage:          7 days: {u.sent_7d} sent, {u.failed_7d} failed; "
        f"30 days: {u.sent_30d} sent, {u.failed_30d} failed"
    )
    typer.echo("\n".join(lines))
    for w in p.warnings:
        err(f"warning: {w.field}: {w.message}")


def _warn(p: ProfileRead) -> None:
    for w in p.warnings:
        err(f"warning: {w.field}: {w.message}")


@profile_app.command("list")
@handle_errors
def list_profiles(
    as_json: JsonOpt = False,
    unused: Annotated[
        bool, typer.Option("--unused", help="Only profiles flagged unused, with the reason.")
    ] = False,
) -> None:
    """List profiles."""
    with opened() as app:
        profiles = app.profiles.list(unused=unused)
        bound: dict[str, int] = {}
        for b in app.bindings.list():
            bound[b.profile] = bound.get(b.profile, 0) + 1
    if as_json:
        print_json(profiles)
        return
    if not profiles:
        typer.echo(
            "No unused profiles."
            if unused
            else "No email profiles configured. Create one with `postroom profile add NAME …`."
        )
        return
    rows = [
        [
            p.name + (" *" if p.is_default else ""),
            f"{p.smtp['host']}:{p.smtp['port']}",
            str(p.smtp["security"]),
            "yes" if p.imap else "no",
            "yes" if p.enabled else "no",
            str(bound.get(p.name, 0)),
            ("ok" if p.last_test.ok else p.last_test.error_code or "failed")
            + (" (outdated)" if p.last_test.stale else "")
            if p.last_test
            else "-",
            f"{p.last_used_at:%Y-%m-%d %H:%M}" if p.last_used_at else "never",
            f"{p.usage.sent_7d}/{p.usage.failed_7d}",
        ]
        for p in profiles
    ]
    typer.echo(
        table(
            rows,
            [
                "name",
                "smtp",
                "security",
                "imap",
                "enabled",
                "processes",
                "last test",
                "last used",
                "7d sent/failed",
            ],
        )  # fmt: skip
    )
    typer.echo("(* = system default)")
    for p in profiles:
        if p.unused:
            typer.echo(f"unused: {p.name}: {p.unused}")


@profile_app.command("show")
@handle_errors
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show one profile (secrets only as 'set')."""
    with opened() as app:
        p = app.profiles.get(name)
    print_json(p) if as_json else _print_profile(p)


Opt = typer.Option


def add_or_edit(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Profile name, e.g. 'QA alerts'.")],
    new_name: Annotated[str | None, Opt("--name", help="Rename (edit only).")] = None,
    description: Annotated[str | None, Opt(help="Free text shown in listings.")] = None,
    enabled: Annotated[
        bool | None, Opt("--enabled/--disabled", help="Enable or disable the profile.")
    ] = None,
    smtp_host: Annotated[
        str | None, Opt("--smtp-host", help="SMTP server name or address.")
    ] = None,
    smtp_port: Annotated[
        int | None, Opt("--smtp-port", help="SMTP port (587 STARTTLS, 465 TLS, 25).")
    ] = None,
    security: Annotated[str | None, Opt("--security", help="starttls | tls | none")] = None,
    verify_certificate: Annotated[
        bool | None,
        Opt(
            "--verify-certificate/--no-verify-certificate",
            help="Check the server's TLS certificate.",
        ),
    ] = None,
    ca_bundle: Annotated[
        str | None, Opt("--ca-bundle", metavar="FILE", help="PEM file of a private CA to trust.")
    ] = None,
    auth: Annotated[str | None, Opt("--auth", help="none | basic | oauth2")] = None,
    username: Annotated[str | None, Opt("--username", help="SMTP user name.")] = None,
    password_stdin: Annotated[
        bool, Opt("--password-stdin", help="Read the SMTP password from stdin.")
    ] = False,
    password_env: Annotated[
        str | None,
        Opt("--password-env", metavar="VAR", help="Read the SMTP password from this variable."),
    ] = None,
    auth_domain: Annotated[
        str | None, Opt("--auth-domain", help="NTLM domain, when the server needs one.")
    ] = None,
    oauth2_config: Annotated[
        str | None,
        Opt("--oauth2-config", metavar="NAME", help="OAuth2 configuration for --auth oauth2."),
    ] = None,
    connect_timeout: Annotated[
        str | None,
        Opt("--connect-timeout", metavar="SECONDS|none", help="Seconds to connect, or 'none'."),
    ] = None,
    send_timeout: Annotated[
        str | None,
        Opt("--send-timeout", metavar="SECONDS|none", help="Seconds per message, or 'none'."),
    ] = None,
    local_hostname: Annotated[
        str | None, Opt("--local-hostname", help="Name sent in EHLO (default: this host).")
    ] = None,
    from_address: Annotated[
        str | None, Opt("--from-address", help="Sender address of the mail.")
    ] = None,
    from_name: Annotated[str | None, Opt("--from-name", help="Sender display name.")] = None,
    reply_to: Annotated[str | None, Opt("--reply-to", help="Reply-To address.")] = None,
    imap_host: Annotated[
        str | None, Opt("--imap-host", help="IMAP server: adds receiving to the profile.")
    ] = None,
    imap_port: Annotated[
        int | None, Opt("--imap-port", help="IMAP port (993 TLS, 143 STARTTLS).")
    ] = None,
    imap_security: Annotated[
        str | None, Opt("--imap-security", help="tls | starttls | none")
    ] = None,
    imap_verify_certificate: Annotated[
        bool | None,
        Opt(
            "--imap-verify-certificate/--no-imap-verify-certificate",
            help="Check the IMAP server's TLS certificate.",
        ),
    ] = None,
    imap_ca_bundle: Annotated[
        str | None,
        Opt("--imap-ca-bundle", metavar="FILE", help="PEM file of a private CA to trust (IMAP)."),
    ] = None,
    imap_auth: Annotated[str | None, Opt("--imap-auth", help="basic | oauth2")] = None,
    imap_username: Annotated[str | None, Opt("--imap-username", help="IMAP user name.")] = None,
    imap_password_stdin: Annotated[
        bool, Opt("--imap-password-stdin", help="Read the IMAP password from stdin.")
    ] = False,
    imap_password_env: Annotated[
        str | None,
        Opt(
            "--imap-password-env", metavar="VAR", help="Read the IMAP password from this variable."
        ),
    ] = None,
    imap_oauth2_config: Annotated[
        str | None,
        Opt(
            "--imap-oauth2-config",
            metavar="NAME",
            help="OAuth2 configuration for --imap-auth oauth2.",
        ),
    ] = None,
    imap_folder: Annotated[
        str | None, Opt("--imap-folder", help="Folder to read (default INBOX).")
    ] = None,
    imap_processed: Annotated[
        str | None, Opt("--imap-processed", help="mark_seen | move:<folder> | delete")
    ] = None,
    imap_poll_interval: Annotated[
        int | None, Opt("--imap-poll-interval", help="Seconds between checks without IDLE.")
    ] = None,
    imap_idle: Annotated[
        bool | None,
        Opt("--imap-idle/--no-imap-idle", help="Use IMAP IDLE to hear of new mail at once."),
    ] = None,
    no_imap: Annotated[bool, Opt("--no-imap", help="Remove the IMAP section (edit only).")] = False,
    email_actions_base_url: Annotated[
        str | None, Opt("--email-actions-base-url", help="Public URL for approve/reject links.")
    ] = None,
    rate_limit: Annotated[int | None, Opt("--rate-limit", help="Messages per minute.")] = None,
    max_connections: Annotated[
        int | None, Opt("--max-connections", help="SMTP connections at a time.")
    ] = None,
    version: Annotated[
        int | None, Opt("--version", help="Refuse if the profile changed since this version.")
    ] = None,
    force: Annotated[bool, Opt("--force", help="Disable even when processes use it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create (add) or change (edit) a profile; see the help of `profile add` and `edit`."""
    editing = ctx.info_name == "edit"
    if not editing and (new_name or version is not None or no_imap or force):
        bad_input("name", "--name, --version, --no-imap and --force are for `profile edit`")
    data: dict[str, Any] = {}
    for path, value in [
        ("name", new_name if editing else name),
        ("description", description),
        ("enabled", enabled),
        ("smtp.host", smtp_host),
        ("smtp.port", smtp_port),
        ("smtp.security", security),
        ("smtp.verify_certificate", verify_certificate),
        ("smtp.auth", auth),
        ("smtp.username", username),
        ("smtp.auth_domain", auth_domain),
        ("smtp.oauth2_config", oauth2_config),
        ("smtp.connect_timeout_s", _timeout(connect_timeout, "smtp.connect_timeout_s")),
        ("smtp.send_timeout_s", _timeout(send_timeout, "smtp.send_timeout_s")),
        ("smtp.local_hostname", local_hostname),
        ("sender.from_address", from_address),
        ("sender.from_name", from_name),
        ("sender.reply_to", reply_to),
        ("imap.host", imap_host),
        ("imap.port", imap_port),
        ("imap.security", imap_security),
        ("imap.verify_certificate", imap_verify_certificate),
        ("imap.auth", imap_auth),
        ("imap.username", imap_username),
        ("imap.oauth2_config", imap_oauth2_config),
        ("imap.folder", imap_folder),
        ("imap.processed", imap_processed),
        ("imap.poll_interval_s", imap_poll_interval),
        ("imap.use_idle", imap_idle),
        ("email_actions_base_url", email_actions_base_url),
        ("rate_limit_per_minute", rate_limit),
        ("max_connections", max_connections),
    ]:
        if value is None and path.endswith("_timeout_s"):
            data.setdefault(path.split(".")[0], {})[path.split(".")[1]] = None
            continue
        _put(data, path, value)
    for field, pem_path in (("smtp.ca_bundle", ca_bundle), ("imap.ca_bundle", imap_ca_bundle)):
        if pem_path is not None:
            _put(data, field, _pem_file(pem_path, field))
    wants_smtp_password = (auth or "") == "basic" and not editing
    _put(
        data,
        "smtp.password",
        read_secret(
            stdin=password_stdin,
            env=password_env,
            prompt="SMTP password" if wants_smtp_password else None,
            field="smtp.password",
        ),
    )
    _put(
        data,
        "imap.password",
        read_secret(
            stdin=imap_password_stdin,
            env=imap_password_env,
            prompt="IMAP password" if imap_host and not editing else None,
            field="imap.password",
        ),
    )
    with opened() as app:
        if editing:
            if no_imap:
                if "imap" in data:
                    bad_input(
                        "imap", "--no-imap removes IMAP; don't combine it with --imap-… flags"
                    )
                data["imap"] = None
            p = app.profiles.update(
                name, data, version=version, force=force, actor=CLI_ACTOR, operator=True
            )
        else:
            p = app.profiles.create(data, actor=CLI_ACTOR, operator=True)
    if as_json:
        print_json(p)
    else:
        typer.echo(
            f"{'Updated' if editing else 'Created'} profile '{p.name}' (version {p.version})."
        )
        if not editing and p.is_default:
            from postroom.profiles.schemas import NOW_DEFAULT

            typer.echo(NOW_DEFAULT)
        _warn(p)


_EDIT_ONLY = ("new_name", "no_imap", "version", "force")


def _variant(doc: str, *, editing: bool) -> Callable[..., None]:
    """``add_or_edit`` under its own help text; ``add`` without the flags only ``edit`` has."""
    import inspect

    def command(**kwargs: Any) -> None:
        add_or_edit(**kwargs)

    signature = inspect.signature(add_or_edit, eval_str=True)
    keep = [p for p in signature.parameters.values() if editing or p.name not in _EDIT_ONLY]
    command.__signature__ = signature.replace(parameters=keep)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in keep} | {"return": None}
    command.__doc__ = doc
    return handle_errors(command)


profile_app.command("add")(
    _variant(
        """Create a profile from flags named after its fields.

        The SMTP password comes from --password-stdin, --password-env or a prompt.""",
        editing=False,
    )
)
profile_app.command("edit")(
    _variant(
        """Change the given fields of a profile; the others stay as they are.

        A new host, port, security or username needs that side's password again.""",
        editing=True,
    )
)


@profile_app.command("apply")
@handle_errors
def apply(
    file: Annotated[str, typer.Option("-f", "--file", help="JSON or YAML file; '-' = stdin.")],
    as_json: JsonOpt = False,
) -> None:
    """Create or update a profile (by name) from a JSON or YAML file in the profile shape."""
    data = read_document(file)
    with opened() as app:
        p, created = app.profiles.apply(data, actor=CLI_ACTOR, operator=True)
    if as_json:
        print_json(p)
    else:
        typer.echo(
            f"{'Created' if created else 'Updated'} profile '{p.name}' (version {p.version})."
        )
        _warn(p)


@profile_app.command("delete")
@handle_errors
def delete(
    name: str,
    force: Annotated[
        bool, typer.Option("--force", help="Also when bound or default; unbinds.")
    ] = False,
) -> None:
    """Delete a profile. Refused while processes use it, unless --force."""
    with opened() as app:
        unbound = app.profiles.delete(name, force=force, actor=CLI_ACTOR)
    typer.echo(f"Deleted profile '{name}'.")
    if unbound:
        typer.echo("Unbound processes (they now use the system default): " + ", ".join(unbound))


@profile_app.command("set-default")
@handle_errors
def set_default(name: str) -> None:
    """Make a profile the system default (postroom's own mail and unbound processes)."""
    with opened() as app:
        app.set_default(name, actor=CLI_ACTOR)
    typer.echo(f"'{name}' is now the system default profile.")


@handle_errors
def bind(process: str, profile: str) -> None:
    """Send a process's mail through a profile."""
    with opened() as app:
        b = app.bind(process, profile, actor=CLI_ACTOR)
    typer.echo(f"Process '{b.process}' now uses profile '{b.profile}'.")


@handle_errors
def unbind(process: str) -> None:
    """Remove a process's binding (it falls back to the system default)."""
    with opened() as app:
        app.unbind(process, actor=CLI_ACTOR)
        explanation = app.explain(process)
    typer.echo(f"Removed the binding of '{process}'. {explanation.message}")


@handle_errors
def explain(process: str, as_json: JsonOpt = False) -> None:
    """Say which profile a process uses, and why."""
    with opened() as app:
        e = app.explain(process)
    if as_json:
        print_json(e)
    else:
        typer.echo(e.message)
    if e.profile is None:
        raise typer.Exit(1)


def _step_line(s: Step, width: int) -> str:
    mark = "ok  " if s.ok else "FAIL"
    return f"  {mark} {s.name.ljust(width)} {s.ms:>8.1f} ms  {s.detail}"


def print_diagnosis(d: Diagnosis, *, steps: bool = True) -> None:
    """Steps one per line (unless already shown as they finished), then the verdict, the
    message and the hint."""
    width = max((len(s.name) for s in d.steps), default=4)
    for s in d.steps if steps else ():
        typer.echo(_step_line(s, width))
    if d.ok:
        typer.echo(f"Passed ({d.kind}) in {d.total_ms / 1000:.1f} s.")
    elif d.error is not None:
        typer.echo(f"Failed: {d.error.code}: {d.error.message}")
        typer.echo(f"What to do: {d.error.hint}")


@profile_app.command("test")
@handle_errors
def test(
    name: Annotated[str | None, typer.Argument(help="A saved profile.")] = None,
    file: Annotated[
        str | None,
        typer.Option("-f", "--file", help="Test unsaved settings from JSON/YAML ('-' = stdin)."),
    ] = None,
    imap: Annotated[bool, typer.Option("--imap", help="Test IMAP instead of SMTP.")] = False,
    send_to: Annotated[
        str | None, typer.Option("--send-to", help="Also send a real test message here.")
    ] = None,
    roundtrip: Annotated[
        bool, typer.Option("--roundtrip", help="Send by SMTP and wait until IMAP sees it.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Test a profile step by step; exit 0 when it passed, 1 when it did not."""
    settings = read_document(file) if file else None
    if name is None and settings is None:
        bad_input("name", "give a profile name, or -f FILE with unsaved settings")
    from postroom.diagnostics.recorder import STEP_LISTENER

    shown: list[Step] = []

    def show_step(kind: str, step: Step) -> None:
        # a test can take 30 s: each step is printed the moment it finishes
        if roundtrip and kind != "roundtrip":
            step = step.model_copy(update={"name": f"{kind}.{step.name}"})
        shown.append(step)
        typer.echo(_step_line(step, 16))

    token = STEP_LISTENER.set(None if as_json else show_step)
    try:
        with opened() as app:
            d = app.test_profile(
                name,
                settings=settings,
                imap=imap,
                smtp=not imap or roundtrip,
                send_to=send_to,
                roundtrip=roundtrip,
                actor=CLI_ACTOR,
                operator=True,
            )
    finally:
        STEP_LISTENER.reset(token)
    if as_json:
        print_json(d)
    else:
        print_diagnosis(d, steps=not shown)
    if not d.ok:
        raise typer.Exit(1)


@profile_app.command("detect")
@handle_errors
def detect(
    address: Annotated[str, typer.Argument(help="The e-mail address the profile sends from.")],
    as_json: JsonOpt = False,
) -> None:
    """Suggest servers for ADDRESS (built-in data, autoconfig, SRV, MX); saves nothing.

    Exit 0 with at least one suggestion, 1 with none, 2 for a malformed address."""
    with opened() as app:
        found = app.detect_profile(address)
    if as_json:
        print_json(found.as_dict())
    else:
        for suggestion in found.suggestions:
            typer.echo(f"Suggestion from {suggestion.source}: {suggestion.detail}")
            for side in ("smtp", "imap"):
                server = suggestion.settings.get(side)
                if server:
                    typer.echo(
                        f"  {side.upper():4}  {server['host']} port {server['port']} "
                        f"{server['security']}, username {server.get('username') or '-'}"
                    )
            if suggestion.note:
                typer.echo(f"  note: {suggestion.note}")
        if not found.suggestions:
            typer.echo(f"No settings found for {found.domain}. Tried:")
            for source, result in found.tried:
                typer.echo(f"  {source}: {result}")
    if not found.suggestions:
        raise typer.Exit(1)
