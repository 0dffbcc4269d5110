// `{{name}}`: AI agents may read; anything else they try is refused.
//
// Principals of kind `agent` may use the methods in `agent_methods` (default `GET`, `HEAD`,
// `OPTIONS`); any other method is denied with 403 `agent-read-only`. Everyone else passes.
// Change `onRequest` to your rules, then `portcullis build` and `portcullis test tests/`.
//
// The SDK is imported by a path relative to this file (made by `portcullis new`); keep it
// relative, since `portcullis build` stages this folder and the SDK side by side.

import { allow, asciiUpper, definePolicy, deny, isAgent, metadata, settings as s } from '{{sdk_js}}/portcullis-guest.js';

export default definePolicy({
  metadata: () => metadata('{{name}}', '0.1.0'),

  // From `[policies.{{name}}] settings = { ... }` in portcullis.toml.
  settings: s.object({
    // Methods agents may use; empty means GET, HEAD and OPTIONS.
    agent_methods: s.list(s.string()).default([]),
  }),

  onRequest(settings, req) {
    if (!isAgent(req)) return allow();
    const allowed = settings.agent_methods.length ? settings.agent_methods.map(asciiUpper) : ['GET', 'HEAD', 'OPTIONS'];
    if (allowed.includes(asciiUpper(req.method))) return allow();
    return deny(403, 'agent-read-only', `agents may not ${req.method} ${req.path}`);
  },
});
