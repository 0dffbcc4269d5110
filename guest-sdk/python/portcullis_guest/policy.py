"""The `Policy` base class a policy implements, the `Metadata` it describes itself with, and
`export_policy`, which turns it into the component's `portcullis:policy/handler` export."""

from __future__ import annotations

from typing import Any, Optional

from ._host import report_exception
from ._wit import settings_import, types
from .decision import Outcome, OutcomeLike, allow, as_outcome, deny
from .settings import SettingsError, parse, prepare


class Metadata:
    """What a policy says about itself: a builder for the WIT `policy-metadata` record.

    By default a policy takes part in the request phase only and needs no bodies. Ask for a
    body only when the policy reads it: the host skips copying bodies for policies that do
    not, and a redaction of body fields needs no body (the host applies it)."""

    __slots__ = ("name", "version", "_phases", "_needs_request_body", "_needs_response_body")

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self._phases = types.Phases.REQUEST
        self._needs_request_body = False
        self._needs_response_body = False

    def phases(self, phases: "types.Phases") -> "Metadata":
        """Sets the phases the host calls the policy for, e.g.
        `types.Phases.REQUEST | types.Phases.RESPONSE`."""
        self._phases = phases
        return self

    def response_phase_only(self) -> "Metadata":
        """Takes part in the response phase only."""
        return self.phases(types.Phases.RESPONSE)

    def both_phases(self) -> "Metadata":
        """Takes part in both phases."""
        return self.phases(types.Phases.REQUEST | types.Phases.RESPONSE)

    def needs_request_body(self) -> "Metadata":
        """Asks the host to copy request bodies into `on_request` (up to its cap)."""
        self._needs_request_body = True
        return self

    def needs_response_body(self) -> "Metadata":
        """Asks the host to copy response bodies into `on_response` (up to its cap)."""
        self._needs_response_body = True
        return self

    def build(self) -> "types.PolicyMetadata":
        """The WIT record the host receives."""
        return types.PolicyMetadata(
            self.name,
            self.version,
            self._phases,
            self._needs_request_body,
            self._needs_response_body,
        )


class Policy:
    """A Portcullis policy: subclass it, set `Settings`, override what you need, and export
    it from the policy's module with `Handler = export_policy(MyPolicy)`.

    Every method receives the parsed settings: each evaluation runs in a fresh instance, so
    there is nothing to keep on `self`, and a policy's logic stays a function of (settings,
    request) that unit tests call natively. Do not keep state in module globals either: it
    is gone with the instance (and, built into the component, frozen at build time).
    """

    #: The settings' dataclass (see `portcullis_guest.settings`), or `None` for a policy
    #: without settings (it then accepts only `{}`).
    Settings: Any = None

    def metadata(self) -> Metadata:
        """Name, version, phases, body needs. Called once at load, before `init`."""
        raise NotImplementedError("a policy must define metadata()")

    def validate(self, settings: Any) -> Optional[SettingsError]:
        """Checks parsed settings beyond what their types enforce, once at load: raise (or
        return) `SettingsError(setting, message)` to refuse them. Accepts everything by
        default."""
        return None

    def on_request(self, settings: Any, request: "types.Request") -> OutcomeLike:
        """Decides about a request before it reaches the upstream. Allows by default."""
        return allow()

    def on_response(
        self, settings: Any, request: "types.Request", response: "types.Response"
    ) -> OutcomeLike:
        """Decides about a response before it reaches the caller. Allows by default."""
        return allow()


def _policy(policy: Any) -> Policy:
    return policy() if isinstance(policy, type) else policy


def check_settings(policy: Any, text: str) -> Any:
    """Parses and validates a settings document the way the component's `init` does, so
    unit tests can check settings natively: `check_settings(AgentGuard, '{"x": 1}')`.
    Returns the settings or raises `SettingsError`."""
    policy = _policy(policy)
    settings = parse(text, policy.Settings)
    error = policy.validate(settings)
    if isinstance(error, SettingsError):
        raise error
    return settings


def settings_failure(error: SettingsError) -> Outcome:
    """The outcome when the settings do not parse at call time (they passed `init`, so they
    should): a fail-closed 500 `policy-settings` deny."""
    if error.setting:
        reason = f"the policy's setting {error.setting} is invalid: {error.message}"
    else:
        reason = f"the policy's settings are invalid: {error.message}"
    return deny(500, "policy-settings", reason)


def export_policy(policy_class: Any) -> type:
    """The component's `handler` export for a `Policy` subclass. Put it at the top level of
    the module componentize-py builds, under the name `Handler`:

        Handler = export_policy(AgentGuard)

    - `metadata` returns `metadata().build()`,
    - `init` parses the settings into `Settings` (a parse error names the setting) and runs
      `validate`,
    - `on-request` / `on-response` read the settings through the `settings` import, parse
      them and call the policy; settings that no longer parse give a 500 `policy-settings`
      deny. An exception in the policy's code traps the instance, which the host counts as
      a failure of the policy (a deny, unless its config says `fail_open`); a policy built
      with the `log` capability first writes the exception and where it was raised to the
      host's log.
    """
    from componentize_py_types import Err
    from wit_world import exports

    policy = _policy(policy_class)
    # At build time: resolve the settings' types now rather than on every call.
    prepare(policy.Settings)

    # The last settings text and what it parsed to. With a fresh instance per call (the
    # default) this never hits; when the host reuses the instance (`reuse` in its config),
    # the settings are parsed once per instance rather than on every call. The parsed
    # object is then shared by later calls: treat it as read-only.
    parsed: list = [None, None]

    def call_settings() -> Any:
        text = settings_import.get()
        if parsed[0] != text:
            parsed[1] = parse(text, policy.Settings)
            parsed[0] = text
        return parsed[1]

    class Handler(exports.Handler):
        def metadata(self) -> "types.PolicyMetadata":
            try:
                meta = policy.metadata()
                return meta.build() if isinstance(meta, Metadata) else meta
            except BaseException as error:
                report_exception(error)
                raise

        def init(self, settings: str) -> None:
            try:
                check_settings(policy, settings)
            except SettingsError as error:
                raise Err(error.to_wit())
            except BaseException as error:
                report_exception(error)
                raise

        def on_request(self, request: "types.Request") -> "types.Outcome":
            try:
                settings = call_settings()
            except SettingsError as error:
                return settings_failure(error).to_wit()
            try:
                return as_outcome(policy.on_request(settings, request)).to_wit()
            except BaseException as error:
                report_exception(error)
                raise

        def on_response(self, request: "types.Request", response: "types.Response") -> "types.Outcome":
            try:
                settings = call_settings()
            except SettingsError as error:
                return settings_failure(error).to_wit()
            try:
                return as_outcome(policy.on_response(settings, request, response)).to_wit()
            except BaseException as error:
                report_exception(error)
                raise

    Handler.__name__ = Handler.__qualname__ = "Handler"
    Handler.__doc__ = f"The `handler` export for {type(policy).__name__}."
    return Handler
