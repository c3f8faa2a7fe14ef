"""`postroom template list|show|history|preview|apply|edit|delete`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postroom.cli._common import (
    CLI_ACTOR,
    bad_input,
    group,
    handle_errors,
    opened,
    print_json,
    read_document,
    table,
)

if TYPE_CHECKING:
    from postroom.notify.schemas import TemplateRead

__all__ = ["template_app"]

template_app = group("Mail templates: built-in defaults and your own versions.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _read_text(path: str, field: str) -> str:
    try:
        return Path(path).read_text("utf-8")
    except OSError as exc:
        bad_input(field, f"cannot read {path}: {exc.strerror}")
    except UnicodeDecodeError:
        bad_input(field, f"{path} is not UTF-8 text")


def _show(t: TemplateRead) -> None:
    where = "built-in" if t.origin == "builtin" else f"{t.origin}, saved by {t.updated_by}"
    typer.echo(f"Template {t.name} (version {t.version}, {where})")
    if t.description:
        typer.echo(f"  {t.description}")
    for part in ("subject", "html", "text"):
        value = getattr(t, part)
        typer.echo(f"\n--- {part} ---")
        typer.echo(value if value is not None else "(none: generated from the HTML)")
    typer.echo("\n--- sample data ---")
    typer.echo(json.dumps(t.sample_data, indent=2, ensure_ascii=False))


@template_app.command("list")
@handle_errors
def list_templates(as_json: JsonOpt = False) -> None:
    """List the templates in force, built-ins included."""
    with opened() as app:
        found = app.templates.list()
    if as_json:
        print_json(found)
        return
    rows = [
        [t.name, t.origin.value, str(t.version),
         f"{t.updated_at:%Y-%m-%d %H:%M}" if t.updated_at else "-", t.description[:50]]
        for t in found
    ]  # fmt: skip
    typer.echo(table(rows, ["name", "origin", "version", "updated (UTC)", "description"]))


@template_app.command("show")
@handle_errors
def show(
    name: str,
    version: Annotated[int | None, typer.Option(help="An earlier version.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a template's parts and sample data."""
    with opened() as app:
        templates = app.templates
        if version is None:
            found = templates.get(name)
        else:
            matching = [t for t in templates.history(name) if t.version == version]
            if not matching:
                bad_input("version", f"template '{name}' has no version {version}")
            found = matching[0]
    if as_json:
        print_json(found)
    else:
        _show(found)


@template_app.command("history")
@handle_errors
def history(name: str, as_json: JsonOpt = False) -> None:
    """Every saved version of a template, newest first."""
    with opened() as app:
        versions = app.templates.history(name)
    if as_json:
        print_json(versions)
        return
    rows = [
        [str(t.version), "deleted" if t.deleted else t.origin.value,
         f"{t.updated_at:%Y-%m-%d %H:%M}" if t.updated_at else "-", t.updated_by or "-"]
        for t in versions
    ]  # fmt: skip
    typer.echo(table(rows, ["version", "state", "saved (UTC)", "by"]))


@template_app.command("preview")
@handle_errors
def preview(
    name: str,
    data: Annotated[
        str | None, typer.Option("--data", help="JSON/YAML data file ('-' = stdin).")
    ] = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML, not the text.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Render a template on its sample data (or --data); exits 1 when it fails to render."""
    values = read_document(data) if data else None
    with opened() as app:
        rendered = app.templates.preview(name, data=values)
    if as_json:
        print_json(rendered)
        return
    typer.echo(f"Subject: {rendered.subject}\n")
    typer.echo(rendered.html or "(no HTML part)" if html else rendered.text)


@template_app.command("apply")
@handle_errors
def apply(
    file: Annotated[str, typer.Option("-f", "--file", help="JSON or YAML ('-' = stdin).")],
    version: Annotated[
        int | None, typer.Option(help="Refuse if the template moved past this version.")
    ] = None,
) -> None:
    """Create a template, or save a new version of it, from a file.

    The file holds name, subject, html and/or text, description and sample_data; a
    `version` in it (or --version) makes the save fail if someone saved since.
    """
    doc = read_document(file)
    version = doc.pop("version", None) if version is None else version
    doc.pop("origin", None)  # what `show --json` prints can be applied back
    for key in ("updated_at", "updated_by", "deleted"):
        doc.pop(key, None)
    name = doc.get("name")
    if not isinstance(name, str):
        bad_input("name", "is required")
    with opened() as app:
        templates = app.templates
        exists = any(t.name == name for t in templates.list())
        if exists:
            changes = {k: v for k, v in doc.items() if k != "name"}
            saved = templates.update(name, changes, version=version, actor=CLI_ACTOR)
        else:
            saved = templates.create(doc, actor=CLI_ACTOR)
    typer.echo(f"Saved template '{saved.name}' as version {saved.version}.")


@template_app.command("edit")
@handle_errors
def edit(
    name: str,
    subject: Annotated[str | None, typer.Option(help="Subject (a template).")] = None,
    html: Annotated[str | None, typer.Option("--html", help="HTML part from FILE.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Text part from FILE.")] = None,
    no_text: Annotated[
        bool, typer.Option("--no-text", help="Drop the text part: generate it from the HTML.")
    ] = False,
    sample_data: Annotated[
        str | None, typer.Option("--sample-data", help="JSON/YAML file.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What this version changes.")] = None,
    version: Annotated[
        int | None, typer.Option(help="Refuse if the template moved past this version.")
    ] = None,
) -> None:
    """Save a new version with some parts changed (a built-in becomes your override)."""
    changes: dict[str, Any] = {}
    if subject is not None:
        changes["subject"] = subject
    if html is not None:
        changes["html"] = _read_text(html, "html")
    if text is not None and no_text:
        bad_input("text", "give --text or --no-text, not both")
    if text is not None:
        changes["text"] = _read_text(text, "text")
    if no_text:
        changes["text"] = None
    if sample_data is not None:
        changes["sample_data"] = read_document(sample_data)
    if description is not None:
        changes["description"] = description
    if not changes:
        bad_input("template", "nothing to change: give --subject, --html, --text, …")
    with opened() as app:
        saved = app.templates.update(name, changes, version=version, actor=CLI_ACTOR)
    typer.echo(f"Saved template '{saved.name}' as version {saved.version}.")


@template_app.command("delete")
@handle_errors
def delete(
    name: str,
    version: Annotated[
        int | None, typer.Option(help="Refuse if the template moved past this version.")
    ] = None,
) -> None:
    """Delete a template (its history stays); an override falls back to the built-in."""
    with opened() as app:
        restored = app.templates.delete(name, version=version, actor=CLI_ACTOR)
    if restored is None:
        typer.echo(f"Deleted template '{name}'.")
    else:
        typer.echo(f"Deleted your version of '{name}'; the built-in is in force again.")
