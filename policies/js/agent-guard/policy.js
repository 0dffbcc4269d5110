// `agent-guard`: AI agents may read, but a human approves what they change.
//
// For principals of kind `agent`:
// - no `on-behalf-of` user -> deny 403 `agent-without-user` (unless
//   `deny_without_on_behalf_of` is false),
// - `GET`, `HEAD`, `OPTIONS` -> allow,
// - `DELETE` -> deny 403 `agent-delete-forbidden`,
// - any other method (including MCP `CALL`) -> require approval by `approver_group`.
//
// Users, services and anonymous callers pass. Every outcome carries a `rule` label.
// The JavaScript twin of policies/rust/agent-guard: same settings, decisions, codes,
// reasons and labels.

import {
  SettingsError,
  actingFor,
  allow,
  asciiUpper,
  definePolicy,
  deny,
  isAgent,
  metadata,
  requireApproval,
  settings as s,
} from '../../../guest-sdk/js/portcullis-guest.js';

export const VERSION = '0.1.0';

export default definePolicy({
  metadata: () => metadata('agent-guard', VERSION),

  settings: s.object({
    // The group whose members approve agents' writes. Required, non-empty.
    approver_group: s.string(),
    // How long an approval stays valid, in seconds.
    ttl_seconds: s.u32().default(900),
    // Deny agents that act for no user.
    deny_without_on_behalf_of: s.bool().default(true),
  }),

  validate(settings) {
    if (!settings.approver_group.trim()) {
      throw new SettingsError('approver_group', "must name the group that approves agents' writes");
    }
    if (settings.ttl_seconds === 0) {
      throw new SettingsError('ttl_seconds', 'must be at least 1 second');
    }
  },

  onRequest(settings, req) {
    if (!isAgent(req)) return allow().label('rule', 'not-an-agent');
    const agent = req.principal.id;
    const user = actingFor(req);
    if (user === undefined) {
      if (settings.deny_without_on_behalf_of) {
        return deny(403, 'agent-without-user', `agent ${agent} must act on behalf of a user`).label(
          'rule',
          'agent-without-user',
        );
      }
      return decide(settings, req, agent, 'no user');
    }
    return decide(settings, req, agent, user);
  },
});

/** The decision by method for an agent acting for `user`. */
function decide(settings, req, agent, user) {
  const method = asciiUpper(req.method);
  if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS') {
    return allow().label('rule', 'agent-read-only');
  }
  if (method === 'DELETE') {
    return deny(403, 'agent-delete-forbidden', `agents may not delete: DELETE ${req.path}`).label(
      'rule',
      'agent-delete-forbidden',
    );
  }
  return requireApproval(`agent ${agent} acting for ${user} wants to ${method} ${req.path}`, settings.approver_group)
    .ttl(settings.ttl_seconds)
    .label('rule', 'agent-write-needs-approval');
}
