"""`{{name}}`: AI agents may read; anything else they try is refused.

Principals of kind `agent` may use the methods in `agent_methods` (default `GET`, `HEAD`,
`OPTIONS`); any other method is denied with 403 `agent-read-only`. Everyone else passes.
Change `on_request` to your rules, then `portcullis build` and `portcullis test tests/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from portcullis_guest import Metadata, Policy, allow, ascii_upper, deny, export_policy, is_agent, types


@dataclass
class Settings:
    """The settings, from `[policies.{{name}}] settings = { ... }` in portcullis.toml."""

    #: Methods agents may use; empty means GET, HEAD and OPTIONS.
    agent_methods: list[str] = field(default_factory=list)


class {{type}}(Policy):
    Settings = Settings

    def metadata(self) -> Metadata:
        return Metadata("{{name}}", "0.1.0")

    def on_request(self, settings: Settings, req: types.Request):
        if not is_agent(req):
            return allow()
        allowed = [ascii_upper(m) for m in settings.agent_methods] or ["GET", "HEAD", "OPTIONS"]
        if ascii_upper(req.method) in allowed:
            return allow()
        return deny(403, "agent-read-only", f"agents may not {req.method} {req.path}")


Handler = export_policy({{type}})
