"""OpenAPI descriptions of the request bodies that the services validate themselves.

Profile and OAuth2 bodies go to the services as plain JSON objects so that one
validator (with messages for people) judges them everywhere; this module describes
them in the OpenAPI document: ``ProfileCreate`` and ``ProfileUpdate`` (every field
optional, merged field by field), ``OAuth2ConfigCreate`` and ``OAuth2ConfigUpdate``.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from postroom.api.schemas import BulkAction
from postroom.notify.compose import OutgoingMessage
from postroom.oauth2.schemas import OAuth2ConfigSpec
from postroom.profiles.schemas import ProfileSpec

__all__ = ["add_request_schemas", "json_body"]

_REF = "#/components/schemas/"

_BODIES: tuple[tuple[type[BaseModel], str, str], ...] = (
    (ProfileSpec, "ProfileCreate", "ProfileUpdate"),
    (OAuth2ConfigSpec, "OAuth2ConfigCreate", "OAuth2ConfigUpdate"),
)

_SECRETS = frozenset({"password", "client_secret"})

_VERSION = {
    "type": "integer",
    "title": "Version",
    "description": "The version you last read; a stale one is refused with 409 stale_version.",
}


def json_body(schema: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is the component ``schema``."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"$ref": _REF + schema}}},
        }
    }


def _rename_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_REF):
                target = value[len(_REF) :]
                out[key] = _REF + names.get(target, target)
            else:
                out[key] = _rename_refs(value, names)
        return out
    if isinstance(node, list):
        return [_rename_refs(item, names) for item in node]
    return node


def _request_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(model, "validation") for model, _, _ in _BODIES], ref_template=_REF + "{model}"
    )
    defs: dict[str, Any] = top.get("$defs", {})
    objects = [name for name, schema in defs.items() if schema.get("type") == "object"]
    out: dict[str, Any] = {name: s for name, s in defs.items() if name not in objects}
    for variant in ("create", "update"):
        names = {
            name: f"{name}Input" if variant == "create" else f"{name}Patch" for name in objects
        }
        for model, create, update in _BODIES:
            names[model.__name__] = create if variant == "create" else update
        for name in objects:
            schema = _rename_refs(copy.deepcopy(defs[name]), names)
            schema["title"] = names[name]
            for prop_name, prop in schema.get("properties", {}).items():
                if prop_name in _SECRETS:
                    prop["writeOnly"] = True
            if variant == "update":
                schema.pop("required", None)
                for prop in schema.get("properties", {}).values():
                    prop.pop("default", None)
            out[names[name]] = schema
    for _, _, update in _BODIES:
        out[update]["properties"]["version"] = _VERSION
        out[update]["description"] = (
            "Only the fields to change, merged field by field into the stored ones. "
            "A secret left out, empty or masked (********) keeps the stored secret."
        )
    return out


class SendMessage(OutgoingMessage):
    """A message to queue, and how to route it."""

    profile: str | None = Field(default=None, description="The profile; default: the process's")
    process: str | None = Field(default=None, description="The sending process (its binding)")
    idempotency_key: str | None = Field(default=None, description="Repeats return the first id")
    send_at: datetime | None = Field(default=None, description="Not before this time")


def _send_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(SendMessage, "validation"), (BulkAction, "validation")], ref_template=_REF + "{model}"
    )
    return dict(top.get("$defs", {}))


def add_request_schemas(document: dict[str, Any]) -> None:
    """Add the request body schemas to an OpenAPI ``document`` (in place)."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in (_request_schemas() | _send_schemas()).items():
        components.setdefault(name, schema)
