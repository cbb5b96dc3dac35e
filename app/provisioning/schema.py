"""The organisation config's rules as a JSON Schema (draft 2020-12), built from the constants
the parser uses, so the published schema and ``untrusted_config`` cannot drift apart.

``packaging/provisioning/make_templates.py`` writes it to
``packaging/provisioning/enclave-config.schema.json``; a test regenerates it and compares.
A TOML config is checked against it after converting its date-times to RFC 3339 strings.
"""

from __future__ import annotations

from typing import Any

from app.protocol.logentry import MAX_ADMIN_NAME_BYTES
from app.provisioning.config import (
    CONFIG_FORMAT,
    KEY_PATTERN,
    MAX_ADMINS,
    MAX_NAME_CHARS,
    MAX_PINS,
    MAX_RELAYS,
    MAX_VERSION,
    NAME_PATTERN,
    PIN_PATTERN,
    REQUIRED_TOP_KEYS,
    URL_PATTERN,
)
from app.provisioning.rules import (
    LABEL_PATTERN,
    MAX_ATTACHMENT_TYPES,
    MAX_LABELS,
    MIME_PATTERN,
    POLICY_KEYS,
    Kind,
    PolicyKey,
)

SCHEMA_ID = "https://enclave.invalid/schema/enclave-config-1.json"
"""An identifier, not a place to fetch it from (``.invalid`` never resolves)."""

MOMENT_PATTERN = (
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
"""RFC 3339 with its offset, which a TOML offset date-time is; a local one is refused."""

CROSS_KEY_RULES = (
    "Rules beyond this schema, which Enclave also checks: a key is in policy.mandatory or "
    "policy.recommended, not both; within one file timer_minimum_seconds <= "
    "timer_default_seconds <= timer_maximum_seconds, classification_default is empty or one "
    "of classification_labels, and every label of verified_keys_required is one of "
    "classification_labels (each when the file sets both); expires is later than issued; "
    "enrolment.authority_key differs from organisation.root_key; transparency.log_key differs "
    "from both; in transparency.admins no two admins share a name or a key, no admin's key is "
    f"the root, authority or log key, and a name is at most {MAX_ADMIN_NAME_BYTES} bytes in UTF-8."
)


def _policy_value(key: PolicyKey) -> dict[str, Any]:
    described: dict[str, Any] = {"description": key.summary}
    if key.kind is Kind.BOOL:
        return {**described, "type": "boolean", "default": key.default}
    if key.kind is Kind.INT:
        return {
            **described,
            "type": "integer",
            "minimum": key.minimum,
            "maximum": key.maximum,
            "default": key.default,
        }
    if key.kind is Kind.LABEL:
        return {
            **described,
            "type": "string",
            "anyOf": [{"const": ""}, {"pattern": LABEL_PATTERN}],
            "default": "",
        }
    pattern, limit = (
        (LABEL_PATTERN, MAX_LABELS) if key.kind is Kind.LABELS else (MIME_PATTERN, MAX_ATTACHMENT_TYPES)
    )
    return {
        **described,
        "type": "array",
        "items": {"type": "string", "pattern": pattern},
        "maxItems": limit,
        "uniqueItems": True,
        "default": list(key.default) if isinstance(key.default, tuple) else key.default,
    }


def _strings(pattern: str, limit: int, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "type": "array",
        "items": {"type": "string", "pattern": pattern},
        "minItems": 1,
        "maxItems": limit,
        "uniqueItems": True,
    }


def _table(properties: dict[str, Any], description: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table of exactly ``properties``, each required but the ``optional`` ones."""
    return {
        "description": description,
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def json_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict (the published file is ``json.dumps(..., indent=2)``)."""
    hex_key = {"type": "string", "pattern": KEY_PATTERN}
    moment = {"type": "string", "format": "date-time", "pattern": MOMENT_PATTERN}
    top = {
        "format": {"description": "The config format; this Enclave reads 1.", "const": CONFIG_FORMAT},
        "version": {
            "description": "Grows with every new config; a client never goes back to a lower one.",
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_VERSION,
        },
        "issued": {**moment, "description": "When the config was made (a TOML date-time with offset)."},
        "expires": {**moment, "description": "After this time clients refuse the config."},
        "organisation": _table(
            {
                "name": {
                    "description": f"The organisation's name, 1 to {MAX_NAME_CHARS} characters.",
                    "type": "string",
                    "pattern": NAME_PATTERN,
                },
                "root_key": {
                    **hex_key,
                    "description": "The root's Ed25519 public key (root.pub), 64 hex digits.",
                },
            },
            "Who the organisation is.",
        ),
        "relay": _table(
            {
                "urls": _strings(URL_PATTERN, MAX_RELAYS, "The relay's addresses, https://HOST:PORT."),
                "pins": _strings(
                    PIN_PATTERN,
                    MAX_PINS,
                    "The TLS public-key pins the relay may present (sha256/...); several allow a rotation.",
                ),
            },
            "Where the relay is and which TLS keys it may present.",
        ),
        "enrolment": _table(
            {
                "authority_key": {
                    **hex_key,
                    "description": "The enrolment authority's Ed25519 public key (it signs certificates).",
                },
                "urls": _strings(
                    URL_PATTERN, MAX_RELAYS, "The enrolment authority's addresses, https://HOST:PORT."
                ),
                "pins": _strings(
                    PIN_PATTERN,
                    MAX_PINS,
                    "The TLS public-key pins the enrolment authority may present (sha256/...).",
                ),
            },
            "The key the organisation delegates enrolment to, and where that authority is.",
        ),
        "transparency": _table(
            {
                "log_key": {
                    **hex_key,
                    "description": "The public key of the relay's key log (it signs the log's heads), as"
                    " enclave-server prints it and writes it to log.pub.",
                },
                "admins": {
                    "description": f"The admins whose own Ed25519 keys sign admin actions into the key log,"
                    f" 0 to {MAX_ADMINS}.",
                    "type": "array",
                    "items": _table(
                        {
                            "name": {
                                "description": f"The admin's name, 1 to {MAX_NAME_CHARS} characters.",
                                "type": "string",
                                "pattern": NAME_PATTERN,
                            },
                            "key": {**hex_key, "description": "The admin's Ed25519 public key."},
                        },
                        "One admin.",
                    ),
                    "maxItems": MAX_ADMINS,
                    "default": [],
                },
            },
            "The key log's key and the admins who sign into the log.",
            optional=("admins",),
        ),
        "policy": {
            "description": "Mandatory values users cannot change; recommended ones are defaults they may.",
            "type": "object",
            "properties": {
                kind: {"$ref": "#/$defs/policy", "description": f"The {kind} policy values."}
                for kind in ("mandatory", "recommended")
            },
            "additionalProperties": False,
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Enclave organisation config, format 1",
        "description": "A TOML file signed by the organisation's root key (CONFIG.sig beside it). "
        + CROSS_KEY_RULES,
        "type": "object",
        "properties": top,
        "required": list(REQUIRED_TOP_KEYS),
        "additionalProperties": False,
        "$defs": {
            "policy": {
                "type": "object",
                "properties": {key.name: _policy_value(key) for key in POLICY_KEYS},
                "additionalProperties": False,
            }
        },
    }
