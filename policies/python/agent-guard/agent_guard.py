"""`agent-guard`: AI agents may read, but a human approves what they change.

For principals of kind `agent`:
- no `on-behalf-of` user -> deny 403 `agent-without-user` (unless
  `deny_without_on_behalf_of` is false),
- `GET`, `HEAD`, `OPTIONS` -> allow,
- `DELETE` -> deny 403 `agent-delete-forbidden`,
- any other method (including MCP `CALL`) -> require approval by `approver_group`.

Users, services and anonymous callers pass. Every outcome carries a `rule` label.
The Python twin of policies/rust/agent-guard: same settings, decisions, codes, reasons
and labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from portcullis_guest import (
    U32,
    Metadata,
    Policy,
    SettingsError,
    acting_for,
    allow,
    ascii_upper,
    deny,
    export_policy,
    is_agent,
    require_approval,
    types,
)

VERSION = "0.1.0"


@dataclass
class Settings:
    """The policy's settings."""

    #: The group whose members approve agents' writes. Required, non-empty.
    approver_group: str
    #: How long an approval stays valid, in seconds.
    ttl_seconds: U32 = 900
    #: Deny agents that act for no user.
    deny_without_on_behalf_of: bool = True


class AgentGuard(Policy):
    Settings = Settings

    def metadata(self) -> Metadata:
        return Metadata("agent-guard", VERSION)

    def validate(self, settings: Settings) -> None:
        if not settings.approver_group.strip():
            raise SettingsError("approver_group", "must name the group that approves agents' writes")
        if settings.ttl_seconds == 0:
            raise SettingsError("ttl_seconds", "must be at least 1 second")

    def on_request(self, settings: Settings, req: types.Request):
        if not is_agent(req):
            return allow().label("rule", "not-an-agent")
        agent = req.principal.id
        user = acting_for(req)
        if user is None:
            if settings.deny_without_on_behalf_of:
                return deny(
                    403, "agent-without-user", f"agent {agent} must act on behalf of a user"
                ).label("rule", "agent-without-user")
            return decide(settings, req, agent, "no user")
        return decide(settings, req, agent, user)


def decide(settings: Settings, req: types.Request, agent: str, user: str):
    """The decision by method for an agent acting for `user`."""
    method = ascii_upper(req.method)
    if method in ("GET", "HEAD", "OPTIONS"):
        return allow().label("rule", "agent-read-only")
    if method == "DELETE":
        return deny(
            403, "agent-delete-forbidden", f"agents may not delete: DELETE {req.path}"
        ).label("rule", "agent-delete-forbidden")
    return (
        require_approval(
            f"agent {agent} acting for {user} wants to {method} {req.path}",
            settings.approver_group,
        )
        .ttl(settings.ttl_seconds)
        .label("rule", "agent-write-needs-approval")
    )


Handler = export_policy(AgentGuard)
