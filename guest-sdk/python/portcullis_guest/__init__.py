"""Write Portcullis policies in Python (built to components with componentize-py).

A policy is a WebAssembly component that the Portcullis host instantiates fresh for every
evaluation. This package mirrors the Rust SDK (`portcullis-guest`):

- the `Policy` base class and `export_policy`, which turns a subclass into the component's
  `portcullis:policy/handler` export,
- decision builders (`allow`, `deny`, `redact`, `require_approval`),
- helpers on requests and responses (`header`, `query`, `host`, `has_scope`, `is_agent`,
  `acting_for`, `json_body`, `json_pointer` with `*`, ...),
- settings parsed from JSON into a dataclass, with errors that name the setting,
- thin wrappers for the host capabilities (`log`, `clock`, `rate_limit`, `data`), and
  `testing`: constructors and a stand-in host for native unit tests.

    from dataclasses import dataclass
    from portcullis_guest import Metadata, Policy, allow, deny, export_policy

    class ReadOnly(Policy):
        def metadata(self):
            return Metadata("read-only", "0.1.0")

        def on_request(self, settings, req):
            if req.method in ("GET", "HEAD"):
                return allow()
            return deny(405, "read-only", "this API is read-only")

    Handler = export_policy(ReadOnly)
"""

from . import clock, data, log, rate_limit
from ._wit import types
from .decision import (
    DEFAULT_APPROVAL_TTL_SECONDS,
    ApprovalBuilder,
    Outcome,
    RedactBuilder,
    allow,
    as_outcome,
    deny,
    fixed_length,
    keep_email_domain,
    keep_last,
    pseudonym,
    redact,
    require_approval,
)
from .message import (
    acting_for,
    ascii_lower,
    ascii_upper,
    claim,
    has_json_content_type,
    has_scope,
    header,
    header_values,
    host,
    host_of,
    is_agent,
    is_anonymous,
    is_method,
    is_service,
    is_user,
    json_body,
    json_pointer,
    json_pointer_all,
    kind_name,
    looks_like_json,
    query,
)
from .policy import Metadata, Policy, check_settings, export_policy, settings_failure
from .settings import I8, I16, I32, I64, U8, U16, U32, U64, SettingsError, default_of, parse

__version__ = "0.1.0"

__all__ = [
    "ApprovalBuilder",
    "DEFAULT_APPROVAL_TTL_SECONDS",
    "I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64",
    "Metadata",
    "Outcome",
    "Policy",
    "RedactBuilder",
    "SettingsError",
    "acting_for",
    "fixed_length",
    "keep_email_domain",
    "keep_last",
    "pseudonym",
    "allow",
    "as_outcome",
    "ascii_lower",
    "ascii_upper",
    "check_settings",
    "claim",
    "clock",
    "data",
    "default_of",
    "deny",
    "export_policy",
    "has_json_content_type",
    "has_scope",
    "header",
    "header_values",
    "host",
    "host_of",
    "is_agent",
    "is_anonymous",
    "is_method",
    "is_service",
    "is_user",
    "json_body",
    "json_pointer",
    "json_pointer_all",
    "kind_name",
    "log",
    "looks_like_json",
    "parse",
    "query",
    "rate_limit",
    "redact",
    "require_approval",
    "settings_failure",
    "types",
]
