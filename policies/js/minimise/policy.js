// `minimise`: data minimisation from settings alone. Masks values by member name
// (`json-name`) and by what the host's detectors recognise (`detected`), per direction,
// host, path and kind of caller, and more strictly for third-party hosts.
//
// The policy never reads a body: it turns the rules that match an exchange into targets and
// masks, and the host finds and rewrites the values (contract 0.2). So its metadata asks for
// no bodies. The JavaScript twin of policies/rust/minimise, which documents the rule
// semantics: the defaults (when `defaults = true`) then `rules`, in order; every matching
// rule applies; per rule its `fields` then its `detect` names, all with its `mask`; the
// label `rules` names the rules that matched; `allow` when none did.

import {
  SettingsError,
  allow,
  asciiLower,
  definePolicy,
  host,
  masks,
  metadata,
  redact,
  settings as s,
} from '../../../guest-sdk/js/portcullis-guest.js';

export const VERSION = '0.1.0';

/** The detectors the host has (docs/minimisation.md, "Detectors"). */
export const DETECTORS = ['card-number', 'iban', 'email', 'phone', 'jwt', 'secret'];

/** The principal kinds a rule may select. */
const KINDS = ['anonymous', 'user', 'service', 'agent'];

const rule = s.object({
  // The rule's name in the audit label `rules`; `rules[N]` when absent.
  name: s.optional(s.string()),
  // Member names masked at any depth of a JSON body, e.g. `card_number`.
  fields: s.list(s.string()).default([]),
  // Detectors whose findings are masked: card-number, iban, email, phone, jwt, secret.
  detect: s.list(s.string()).default([]),
  // keep-last:N, email-domain, fixed:N, pseudonym, remove or replace:TEXT.
  mask: s.string(),
  // The phase the rule applies in.
  direction: s.oneOf('request', 'response', 'both').default('response'),
  // Only requests to these hosts (exact or `*.suffix`); every host when empty.
  hosts: s.list(s.string()).default([]),
  // Only these path globs (`*` one segment, `**` any number); every path when empty.
  paths: s.list(s.string()).default([]),
  // Only callers of these kinds; every caller when empty.
  principals: s.list(s.string()).default([]),
  // Only when the request's host is not one of `first_party_hosts`.
  third_party: s.bool().default(false),
});

/** A rule with every setting, as the schema would give it. */
function ruleOf(name, fields, detect, mask, more = {}) {
  return { name, fields, detect, mask, direction: 'response', hosts: [], paths: [], principals: [], third_party: false, ...more };
}

/** The default ruleset: cards and IBANs keep their last 4 in every response, secrets and
 * JWTs are removed from every response, agents see e-mail domains only and no phone
 * numbers, and everything bound for or coming from a third party is masked to a fixed
 * length. */
export function defaultRules() {
  return [
    ruleOf('default-cards', ['card_number'], ['card-number'], 'keep-last:4'),
    ruleOf('default-iban', ['iban'], ['iban'], 'keep-last:4'),
    ruleOf('default-secrets', [], ['secret', 'jwt'], 'remove'),
    ruleOf('default-agent-email', [], ['email'], 'email-domain', { principals: ['agent'] }),
    ruleOf('default-agent-phone', [], ['phone'], 'fixed:8', { principals: ['agent'] }),
    ruleOf('default-third-party', ['card_number', 'iban'], ['card-number', 'iban', 'email', 'phone'], 'fixed:8', {
      direction: 'both',
      third_party: true,
    }),
  ];
}

export default definePolicy({
  metadata: () => metadata('minimise', VERSION).bothPhases(),

  settings: s.object({
    // Put the default ruleset before `rules`.
    defaults: s.bool().default(false),
    // The hosts that are not third parties (case-insensitive, without port; `*.suffix`).
    first_party_hosts: s.list(s.string()).default([]),
    // The rules, applied in order after the defaults.
    rules: s.list(rule).default([]),
  }),

  validate(settings) {
    if (settings.rules.length === 0 && !settings.defaults) {
      throw new SettingsError('rules', 'name at least one rule, or set defaults = true');
    }
    settings.first_party_hosts.forEach((name, i) => {
      const message = checkHost(name);
      if (message !== undefined) throw new SettingsError(`first_party_hosts[${i}]`, message);
    });
    settings.rules.forEach((r, i) => {
      const problem = checkRule(r);
      if (problem !== undefined) throw new SettingsError(`rules[${i}]${problem[0]}`, problem[1]);
    });
    const thirdParty = settings.defaults || settings.rules.some((r) => r.third_party);
    if (thirdParty && settings.first_party_hosts.length === 0) {
      throw new SettingsError(
        'first_party_hosts',
        'rules with third_party = true (the defaults have one) need the first-party hosts: name at least one',
      );
    }
  },

  onRequest(settings, req) {
    return decide(settings, req, 'request');
  },

  onResponse(settings, req, _resp) {
    return decide(settings, req, 'response');
  },
});

/** The redactions of every rule that matches `req` in `phase`, in order. */
function decide(settings, req, phase) {
  const target = host(req);
  const firstParty = settings.first_party_hosts.some((pattern) => hostMatches(pattern, target));
  const rules = [
    ...(settings.defaults ? defaultRules() : []).map((r) => ['', r]),
    ...settings.rules.map((r, i) => [`rules[${i}]`, r]),
  ];
  const redaction = redact();
  const names = [];
  for (const [fallback, r] of rules) {
    if (!ruleMatches(r, req, target, firstParty, phase)) continue;
    // Validated in `init`; should the mask not parse here, remove rather than pass on.
    const parsed = parseMask(r.mask);
    const action = typeof parsed === 'string' ? { tag: 'remove' } : parsed;
    for (const name of r.fields) redaction.push({ tag: 'json-name', val: name }, action);
    for (const detector of r.detect) redaction.push({ tag: 'detected', val: detector }, action);
    names.push(r.name ?? fallback);
  }
  if (names.length === 0) return allow();
  return redaction.label('rules', names.join(','));
}

/** Whether `r` applies to `req` in `phase`. */
function ruleMatches(r, req, target, firstParty, phase) {
  return (
    (r.direction === 'both' || r.direction === phase) &&
    (r.principals.length === 0 || r.principals.includes(req.principal.kind)) &&
    (r.hosts.length === 0 || r.hosts.some((pattern) => hostMatches(pattern, target))) &&
    (r.paths.length === 0 || r.paths.some((glob) => globMatches(glob, req.path))) &&
    (!r.third_party || !firstParty)
  );
}

/** Why `r` is not usable: [the key inside the rule, the message], or undefined. */
function checkRule(r) {
  if (r.name !== undefined && (!r.name.trim() || r.name.includes(','))) {
    return ['.name', 'must not be empty or contain a comma'];
  }
  if (r.fields.length === 0 && r.detect.length === 0) {
    return ['', 'name the fields or the detectors (detect) the rule masks'];
  }
  const emptyField = r.fields.findIndex((f) => f === '');
  if (emptyField >= 0) return [`.fields[${emptyField}]`, 'must not be empty'];
  const unknown = r.detect.findIndex((d) => !DETECTORS.includes(d));
  if (unknown >= 0) return [`.detect[${unknown}]`, `\`${r.detect[unknown]}\` is not a detector: use ${oneOf(DETECTORS)}`];
  const parsed = parseMask(r.mask);
  if (typeof parsed === 'string') return ['.mask', parsed];
  for (const [i, name] of r.hosts.entries()) {
    const message = checkHost(name);
    if (message !== undefined) return [`.hosts[${i}]`, message];
  }
  for (const [i, glob] of r.paths.entries()) {
    const message = checkGlob(glob);
    if (message !== undefined) return [`.paths[${i}]`, message];
  }
  const kind = r.principals.findIndex((k) => !KINDS.includes(k));
  if (kind >= 0) return [`.principals[${kind}]`, `\`${r.principals[kind]}\` is not a kind of caller: use ${oneOf(KINDS)}`];
  return undefined;
}

/** `a, b or c`. */
function oneOf(names) {
  return names.length === 1 ? names[0] : `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`;
}

/** A rule's `mask` as the WIT action, or why it is not a mask (a string). */
export function parseMask(text) {
  if (text === 'remove') return { tag: 'remove' };
  if (text === 'email-domain') return { tag: 'mask', val: masks.keepEmailDomain() };
  if (text === 'pseudonym') return { tag: 'mask', val: masks.pseudonym() };
  if (text.startsWith('replace:')) return { tag: 'replace', val: text.slice('replace:'.length) };
  if (text.startsWith('keep-last:')) {
    const n = number(text.slice('keep-last:'.length), 0, 1000);
    if (n === undefined) return `\`${text}\`: the number of characters kept must be a whole number from 0 to 1000`;
    return { tag: 'mask', val: masks.keepLast(n) };
  }
  if (text.startsWith('fixed:')) {
    const n = number(text.slice('fixed:'.length), 1, 256);
    if (n === undefined) return `\`${text}\`: the length must be a whole number from 1 to 256`;
    return { tag: 'mask', val: masks.fixedLength(n) };
  }
  return `\`${text}\` is not a mask: use keep-last:N, email-domain, fixed:N, pseudonym, remove or replace:TEXT`;
}

/** `digits` as a number in `low..=high`: ASCII digits only, at most 4 of them. */
function number(digits, low, high) {
  if (!/^[0-9]{1,4}$/.test(digits)) return undefined;
  const n = Number(digits);
  return n >= low && n <= high ? n : undefined;
}

/** Why `name` is not a host pattern (`api.example.com`, `*.example.com` or `*`). */
function checkHost(name) {
  if (name === '*') return undefined;
  const bare = name.startsWith('*.') ? name.slice(2) : name;
  if (!bare || /[/:* ]/.test(bare)) return `\`${name}\` must be a host name such as api.example.com or *.example.com`;
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

/** Why `glob` is not a usable path glob, if it is not. */
function checkGlob(glob) {
  if (!glob.startsWith('/')) return `\`${glob}\` must start with /`;
  const bad = glob.split('/').find((seg) => seg.includes('*') && seg !== '*' && seg !== '**');
  if (bad !== undefined) return `\`${glob}\`: \`${bad}\` mixes * with text; * and ** must be whole segments`;
  return undefined;
}

/** Whether `path` matches `glob`: `*` is one segment, `**` any number (none too). */
export function globMatches(glob, path) {
  const segments = (p) => p.split('/').filter((seg) => seg !== '');
  return matchesFrom(segments(glob), segments(path));
}

function matchesFrom(glob, path) {
  if (glob.length === 0) return path.length === 0;
  const [first, ...rest] = glob;
  if (first === '**') {
    for (let skip = 0; skip <= path.length; skip++) if (matchesFrom(rest, path.slice(skip))) return true;
    return false;
  }
  if (path.length === 0) return false;
  return (first === '*' || first === path[0]) && matchesFrom(rest, path.slice(1));
}
