// `pii-redact`: removes or masks personal data in responses, and in requests bound for
// third parties.
//
// - Response phase: every configured JSON pointer is redacted in the response body, and
//   every configured header is removed from the response.
// - Request phase: when the request's host is one of `third_party_hosts`, the same
//   pointers are redacted in the request body before it leaves.
//
// The policy never reads a body: it names the fields and the host applies the redactions
// (a pointer that matches nothing is not an error). So its metadata asks for no bodies.
// The JavaScript twin of policies/rust/pii-redact.

import {
  SettingsError,
  allow,
  asciiLower,
  definePolicy,
  host,
  metadata,
  redact,
  settings as s,
} from '../../../guest-sdk/js/portcullis-guest.js';

export const VERSION = '0.1.0';

export default definePolicy({
  metadata: () => metadata('pii-redact', VERSION).bothPhases(),

  settings: s.object({
    // JSON pointers (RFC 6901) of the fields to redact; `*` stands for every element/member.
    fields: s.list(s.string()).default([]),
    // Replace redacted fields with this text; when absent they are removed.
    mask: s.optional(s.string()),
    // Hosts whose request bodies are redacted too (case-insensitive, without port);
    // `*.example.com` covers every subdomain of `example.com`, and `*` every host.
    third_party_hosts: s.list(s.string()).default([]),
    // Response headers to remove (case-insensitive).
    headers: s.list(s.string()).default([]),
  }),

  validate(settings) {
    if (settings.fields.length === 0 && settings.headers.length === 0) {
      throw new SettingsError('fields', 'name at least one field (or a header) to redact');
    }
    settings.fields.forEach((pointer, i) => {
      const message = checkPointer(pointer);
      if (message !== undefined) throw new SettingsError(`fields[${i}]`, message);
    });
    settings.third_party_hosts.forEach((name, i) => {
      if (name === '*') return;
      const bare = name.startsWith('*.') ? name.slice(2) : name;
      if (!bare || /[/:* ]/.test(bare)) {
        throw new SettingsError(
          `third_party_hosts[${i}]`,
          `\`${name}\` must be a host name such as api.example.com or *.example.com`,
        );
      }
    });
    settings.headers.forEach((name, i) => {
      if (!name.trim()) throw new SettingsError(`headers[${i}]`, 'must not be empty');
    });
  },

  onRequest(settings, req) {
    const target = host(req);
    if (!settings.third_party_hosts.some((pattern) => hostMatches(pattern, target))) return allow();
    return bodyFields(settings).label('rule', 'third-party-request').label('host', target);
  },

  onResponse(settings, _req, _resp) {
    const redaction = bodyFields(settings);
    for (const name of settings.headers) redaction.header(name);
    return redaction.label('rule', 'response');
  },
});

/** One redaction per configured pointer: masked when a mask is set, else removed. */
function bodyFields(settings) {
  const redaction = redact();
  for (const pointer of settings.fields) {
    if (settings.mask !== undefined) redaction.jsonMask(pointer, settings.mask);
    else redaction.json(pointer);
  }
  return redaction;
}

/** Why `pointer` is not a JSON pointer to a field, if it is not. */
export function checkPointer(pointer) {
  if (!pointer.startsWith('/')) {
    return `\`${pointer}\` must be a JSON pointer starting with /, e.g. /customer/email`;
  }
  // RFC 6901: `~` only as `~0` (for `~`) or `~1` (for `/`).
  if (/~(?![01])/.test(pointer)) {
    return `\`${pointer}\`: \`~\` must be escaped as ~0 (and \`/\` inside a name as ~1)`;
  }
  return undefined;
}

/** Whether `name` (lower-case, no port) is `pattern`, a subdomain of `example.com` for the
 * pattern `*.example.com`, or anything for `*`. */
export function hostMatches(pattern, name) {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) {
    const domain = pattern.slice(2);
    return (
      name.length > domain.length + 1 &&
      name.endsWith(asciiLower(domain)) &&
      name[name.length - domain.length - 1] === '.'
    );
  }
  return pattern.length === name.length && asciiLower(pattern) === asciiLower(name);
}
