// portcullis-guest: write Portcullis policies in JavaScript (built to components with
// componentize-js). The JavaScript twin of guest-sdk/python (portcullis_guest) and of the
// Rust SDK (portcullis-guest).
//
// This module imports nothing from the host: the build (guest-sdk/js/build.mjs) generates
// the component's entry module, which imports the WIT interfaces and hands them to
// `exportPolicy`. So a policy and this SDK also load in plain Node for unit tests
// (`node --test`), with `testing` standing in for the host.
//
//     import { definePolicy, allow, deny, settings as s } from 'portcullis-guest';
//     export default definePolicy({
//       metadata: () => metadata('read-only', '0.1.0'),
//       settings: s.object({}),
//       onRequest(settings, req) {
//         return ['GET', 'HEAD'].includes(req.method) ? allow() : deny(405, 'read-only', 'this API is read-only');
//       },
//     });
//
// The values crossing the boundary are those componentize-js makes of the WIT types:
// records are objects with camelCase fields (`req.principal.onBehalfOf`), enums are their
// WIT names (`'agent'`), `option<T>` is the value or `undefined`, variants are
// `{ tag: 'deny', val: {...} }`, `list<u8>` is a `Uint8Array`, flags are
// `{ request: true, response: false }`, tuples are arrays.

// ---------------------------------------------------------------------------------------
// Strings

/** `text` with ASCII letters lower-cased and nothing else touched (HTTP's case-insensitive). */
export function asciiLower(text) {
  return text.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

/** `text` with ASCII letters upper-cased and nothing else touched. */
export function asciiUpper(text) {
  return text.replace(/[a-z]+/g, (m) => m.toUpperCase());
}

function eqIgnoreAsciiCase(a, b) {
  return a.length === b.length && asciiLower(a) === asciiLower(b);
}

// ---------------------------------------------------------------------------------------
// Requests, responses, principals

/** The first value of header `name` (case-insensitive), or `undefined`. */
export function header(message, name) {
  const found = message.headers.find(([k]) => eqIgnoreAsciiCase(k, name));
  return found ? found[1] : undefined;
}

/** Every value of header `name` (case-insensitive), in order. */
export function headerValues(message, name) {
  return message.headers.filter(([k]) => eqIgnoreAsciiCase(k, name)).map(([, v]) => v);
}

/** The first value of query parameter `name` (case-sensitive), or `undefined`. */
export function query(request, name) {
  const found = request.query.find(([k]) => k === name);
  return found ? found[1] : undefined;
}

/** The host part of an authority: without `userinfo@`, without the port, IPv6 brackets removed. */
export function hostOf(authority) {
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = authority.slice(at + 1);
  if (authority.startsWith('[')) return authority.slice(1).split(']', 1)[0];
  const colon = authority.lastIndexOf(':');
  if (colon >= 0 && /^[0-9]*$/.test(authority.slice(colon + 1))) return authority.slice(0, colon);
  return authority;
}

/** The target host without the port, lower-cased: `api.example.com` for `API.example.com:8443`. */
export function host(request) {
  return asciiLower(hostOf(request.authority));
}

/** Whether the method is `method`, ignoring ASCII case. */
export function isMethod(request, method) {
  return eqIgnoreAsciiCase(request.method, method);
}

const principalOf = (of) => (of && of.principal ? of.principal : of);

/** Whether the credential carries `scope` (exact match). Takes a principal or a request. */
export function hasScope(of, scope) {
  return principalOf(of).scopes.includes(scope);
}

/** The value of the claim `name`, if the host passed it on. */
export function claim(of, name) {
  const found = principalOf(of).claims.find(([k]) => k === name);
  return found ? found[1] : undefined;
}

export const isAnonymous = (of) => principalOf(of).kind === 'anonymous';
export const isUser = (of) => principalOf(of).kind === 'user';
export const isService = (of) => principalOf(of).kind === 'service';
export const isAgent = (of) => principalOf(of).kind === 'agent';

/** The user this caller acts for, if any (an empty string counts as none). */
export function actingFor(of) {
  const user = principalOf(of).onBehalfOf;
  return user ? user : undefined;
}

// ---------------------------------------------------------------------------------------
// Bodies and JSON pointers

/** Whether the content type says JSON (`application/json`, `text/json`, `*+json`). */
export function hasJsonContentType(body) {
  if (body.contentType == null) return false;
  const essence = asciiLower(body.contentType.split(';', 1)[0].trim());
  return essence === 'application/json' || essence === 'text/json' || essence.endsWith('+json');
}

/** Whether the bytes start (after whitespace) like a JSON object or array. */
export function looksLikeJson(body) {
  for (const b of body.bytes) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0c) continue;
    return b === 0x7b || b === 0x5b;
  }
  return false;
}

const NO_VALUE = Symbol('no value');

function parseBody(body) {
  if (body == null || !(hasJsonContentType(body) || looksLikeJson(body))) return NO_VALUE;
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body.bytes));
  } catch {
    return NO_VALUE;
  }
}

const isBody = (x) => x != null && typeof x === 'object' && x.bytes instanceof Uint8Array;
const isMessage = (x) => x != null && typeof x === 'object' && Array.isArray(x.headers) && 'body' in x;

/** The body of a request, response or body parsed as JSON, or `undefined`. Needs
 * `needsRequestBody()` / `needsResponseBody()` in the metadata. A truncated body does not parse. */
export function jsonBody(message) {
  const value = parseBody(isBody(message) ? message : message.body);
  return value === NO_VALUE ? undefined : value;
}

function segments(pointer) {
  if (pointer === '') return [];
  if (!pointer.startsWith('/')) {
    throw new Error(`\`${pointer}\` is not a JSON pointer: it must be empty or start with /`);
  }
  return pointer.slice(1).split('/').map((raw) => {
    if (raw === '*') return null;
    if (/~(?![01])/.test(raw)) {
      throw new Error(`\`${pointer}\`: \`~\` must be escaped as ~0 (and \`/\` inside a name as ~1)`);
    }
    return raw.replace(/~1/g, '/').replace(/~0/g, '~');
  });
}

function arrayIndex(key) {
  return /^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : undefined;
}

/** Every value the JSON pointer (RFC 6901, `*` for every element or member) matches, in
 * document order. `doc` is parsed JSON, or a request, response or body (parsed first). */
export function jsonPointerAll(doc, pointer) {
  const segs = segments(pointer);
  let current = doc;
  if (isBody(doc)) current = parseBody(doc);
  else if (isMessage(doc)) current = parseBody(doc.body);
  if (current === NO_VALUE) return [];
  let values = [current];
  for (const seg of segs) {
    const next = [];
    for (const value of values) {
      if (Array.isArray(value)) {
        if (seg === null) next.push(...value);
        else {
          const i = arrayIndex(seg);
          if (i !== undefined && i < value.length) next.push(value[i]);
        }
      } else if (value !== null && typeof value === 'object') {
        if (seg === null) next.push(...Object.values(value));
        else if (Object.prototype.hasOwnProperty.call(value, seg)) next.push(value[seg]);
      }
    }
    values = next;
    if (values.length === 0) break;
  }
  return values;
}

/** The first value the pointer matches, or `undefined`. */
export function jsonPointer(doc, pointer) {
  return jsonPointerAll(doc, pointer)[0];
}

// ---------------------------------------------------------------------------------------
// Decisions

/** The time-to-live of an approval when `.ttl()` is not called: 15 minutes. */
export const DEFAULT_APPROVAL_TTL_SECONDS = 900;

function checkInt(what, value, max) {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what} must be an integer between 0 and ${max}, not ${value}`);
  }
  return value;
}

function checkStr(what, value) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, not ${typeof value}`);
  return value;
}

/** A decision plus audit labels; `toWit()` gives the WIT `outcome`. */
export class Outcome {
  constructor(decision, labels = []) {
    this.decision = decision;
    this.labels = [...labels];
  }
  /** Adds a key/value label for the audit record. Never put secrets in labels. */
  label(key, value) {
    this.labels.push([checkStr('label key', key), checkStr('label value', value)]);
    return this;
  }
  build() {
    return this;
  }
  toWit() {
    return { decision: this.decision, labels: this.labels.map(([k, v]) => [k, v]) };
  }
  /** `allow`, `deny`, `redact` or `require-approval`. */
  kind() {
    return this.decision.tag;
  }
  isAllow() {
    return this.decision.tag === 'allow';
  }
  /** `{status, code, reason}` when the decision is `deny`. */
  denial() {
    return this.decision.tag === 'deny' ? this.decision.val : undefined;
  }
  /** The redactions when the decision is `redact` (else `[]`). */
  redactions() {
    return this.decision.tag === 'redact' ? this.decision.val : [];
  }
  /** `{reason, approverGroup, ttlSeconds}` when the decision is `require-approval`. */
  approval() {
    return this.decision.tag === 'require-approval' ? this.decision.val : undefined;
  }
  labelValue(key) {
    const found = this.labels.find(([k]) => k === key);
    return found ? found[1] : undefined;
  }
}

/** Let the message through unchanged. */
export function allow() {
  return new Outcome({ tag: 'allow' });
}

/** Refuse the message. The reason reaches the caller: never put secrets in it. */
export function deny(status, code, reason) {
  return new Outcome({
    tag: 'deny',
    val: { status: checkInt('status', status, 0xffff), code: checkStr('code', code), reason: checkStr('reason', reason) },
  });
}

const remove = { tag: 'remove' };
const replace = (mask) => ({ tag: 'replace', val: checkStr('mask', mask) });
const masked = (mask) => (mask === undefined ? remove : { tag: 'mask', val: mask });

/** Masks (contract 0.2), for `RedactBuilder.jsonName`, `.detected` and `.mask`. */
export const masks = {
  /** Keep the last `n` characters, `*` for the others. */
  keepLast: (n) => ({ tag: 'keep-last', val: checkInt('keepLast', n, 0xffffffff) }),
  /** Keep an e-mail address's `@domain`: `*****@example.com`. */
  keepEmailDomain: () => ({ tag: 'keep-email-domain' }),
  /** Exactly `n` `*`, whatever the value's length. */
  fixedLength: (n) => ({ tag: 'fixed-length', val: checkInt('fixedLength', n, 0xffffffff) }),
  /** A keyed pseudonym (`pn_…`, HMAC-SHA256 under the host's `[redaction]` key). */
  pseudonym: () => ({ tag: 'pseudonym' }),
};

/** Collects redactions; see `redact()`. */
export class RedactBuilder {
  constructor() {
    this.items = [];
    this.labels = [];
  }
  push(target, action) {
    this.items.push({ target, action });
    return this;
  }
  /** Removes the body value at this JSON pointer (`*` for every element or member). */
  json(pointer) {
    return this.push({ tag: 'json-pointer', val: checkStr('pointer', pointer) }, remove);
  }
  /** Replaces the body value at this JSON pointer with the JSON string `mask`. */
  jsonMask(pointer, mask) {
    return this.push({ tag: 'json-pointer', val: checkStr('pointer', pointer) }, replace(mask));
  }
  /** Removes every header with this name (case-insensitive). */
  header(name) {
    return this.push({ tag: 'header', val: checkStr('header name', name) }, remove);
  }
  headerMask(name, mask) {
    return this.push({ tag: 'header', val: checkStr('header name', name) }, replace(mask));
  }
  /** Removes every query parameter with this name (request phase only). */
  query(name) {
    return this.push({ tag: 'query', val: checkStr('query name', name) }, remove);
  }
  queryMask(name, mask) {
    return this.push({ tag: 'query', val: checkStr('query name', name) }, replace(mask));
  }
  /** Removes (or, with a mask from `masks`, masks) every body member with this name, at any
   * depth (contract 0.2): `.jsonName('card_number', masks.keepLast(4))`. */
  jsonName(name, mask) {
    return this.push({ tag: 'json-name', val: checkStr('member name', name) }, masked(mask));
  }
  /** Removes (or masks) what the host's detector finds in the body, headers and query
   * (contract 0.2): 'card-number', 'iban', 'email', 'phone', 'jwt', 'secret'. */
  detected(detector, mask) {
    return this.push({ tag: 'detected', val: checkStr('detector', detector) }, masked(mask));
  }
  /** Masks the values `target` names, e.g. `.mask({ tag: 'header', val: 'x-customer' }, masks.pseudonym())`. */
  mask(target, mask) {
    return this.push(target, { tag: 'mask', val: mask });
  }
  label(key, value) {
    this.labels.push([checkStr('label key', key), checkStr('label value', value)]);
    return this;
  }
  isEmpty() {
    return this.items.length === 0;
  }
  /** `redact` with the redactions, or `allow` when there are none (labels kept either way). */
  build() {
    const decision = this.items.length ? { tag: 'redact', val: [...this.items] } : { tag: 'allow' };
    return new Outcome(decision, this.labels);
  }
}
for (const name of ['kind', 'isAllow', 'redactions', 'labelValue', 'toWit']) {
  RedactBuilder.prototype[name] = function (...args) {
    return this.build()[name](...args);
  };
}

/** Let the message through with fields removed or masked (applied by the host). */
export function redact() {
  return new RedactBuilder();
}

/** Describes an approval; see `requireApproval()`. */
export class ApprovalBuilder {
  constructor(reason, approverGroup) {
    this.reason = checkStr('reason', reason);
    this.approverGroup = checkStr('approver group', approverGroup);
    this.ttlSeconds = DEFAULT_APPROVAL_TTL_SECONDS;
    this.labels = [];
  }
  /** How long the approval, once given, stays valid (default 900 s). */
  ttl(seconds) {
    this.ttlSeconds = checkInt('ttl', seconds, 0xffffffff);
    return this;
  }
  label(key, value) {
    this.labels.push([checkStr('label key', key), checkStr('label value', value)]);
    return this;
  }
  build() {
    const val = { reason: this.reason, approverGroup: this.approverGroup, ttlSeconds: this.ttlSeconds };
    return new Outcome({ tag: 'require-approval', val }, this.labels);
  }
}
for (const name of ['kind', 'approval', 'labelValue', 'toWit']) {
  ApprovalBuilder.prototype[name] = function (...args) {
    return this.build()[name](...args);
  };
}

/** Hold the request until a member of `approverGroup` confirms it. */
export function requireApproval(reason, approverGroup) {
  return new ApprovalBuilder(reason, approverGroup);
}

/** Any of the things a policy may return, as an `Outcome`. */
export function asOutcome(value) {
  if (value instanceof Outcome) return value;
  if (value instanceof RedactBuilder || value instanceof ApprovalBuilder) return value.build();
  if (value && typeof value === 'object' && value.decision && Array.isArray(value.labels)) {
    return new Outcome(value.decision, value.labels);
  }
  throw new TypeError(
    `a policy must return an outcome (allow(), deny(...), redact()..., requireApproval(...)), not ${value === null ? 'null' : typeof value}`,
  );
}

// ---------------------------------------------------------------------------------------
// Metadata

/** What a policy says about itself: a builder for the WIT `policy-metadata` record.
 * Request phase only and no bodies by default. */
export class Metadata {
  constructor(name, version) {
    this.name = name;
    this.version = version;
    this.phases = { request: true, response: false };
    this.needsRequestBodyFlag = false;
    this.needsResponseBodyFlag = false;
  }
  responsePhaseOnly() {
    this.phases = { request: false, response: true };
    return this;
  }
  bothPhases() {
    this.phases = { request: true, response: true };
    return this;
  }
  needsRequestBody() {
    this.needsRequestBodyFlag = true;
    return this;
  }
  needsResponseBody() {
    this.needsResponseBodyFlag = true;
    return this;
  }
  build() {
    return {
      name: this.name,
      version: this.version,
      phases: { ...this.phases },
      needsRequestBody: this.needsRequestBodyFlag,
      needsResponseBody: this.needsResponseBodyFlag,
    };
  }
}

export function metadata(name, version) {
  return new Metadata(name, version);
}

// ---------------------------------------------------------------------------------------
// Settings: a JSON document checked against a schema, with errors that name the setting
// (the rules and messages of the Rust SDK's serde with `deny_unknown_fields`).

/** A setting the policy refuses: `setting` is its path (`rules[2].path`, `''` for the
 * whole document), `message` what is wrong. */
export class SettingsError extends Error {
  constructor(setting, message) {
    super(message);
    this.name = 'SettingsError';
    this.setting = setting;
  }
  toString() {
    return this.setting ? `SettingsError: ${this.setting}: ${this.message}` : `SettingsError: ${this.message}`;
  }
  toWit() {
    return { setting: this.setting, message: this.message };
  }
}

function formatPath(path) {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${seg}` : seg;
  }
  return out;
}

function unexpected(value) {
  if (value === null) return 'null';
  if (typeof value === 'boolean') return `boolean \`${value}\``;
  if (typeof value === 'number') return Number.isInteger(value) ? `integer \`${value}\`` : `floating point \`${value}\``;
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (Array.isArray(value)) return 'sequence';
  return 'map';
}

function quoteList(names) {
  const q = names.map((n) => `\`${n}\``);
  if (q.length <= 1) return q.join('');
  if (q.length === 2) return `${q[0]} or ${q[1]}`;
  return `one of ${q.join(', ')}`;
}

class Schema {
  constructor(expected, convert, empty) {
    this.expected = expected;
    this.convertFn = convert;
    this.empty = empty;
    this.hasDefault = false;
    this.optional = false;
  }
  /** The value when the setting is absent. */
  default(value) {
    const s = Object.assign(Object.create(Schema.prototype), this);
    s.hasDefault = true;
    s.defaultValue = value;
    return s;
  }
  convert(value, path) {
    return this.convertFn(value, path);
  }
  wrong(value, path) {
    return new SettingsError(formatPath(path), `invalid type: ${unexpected(value)}, expected ${this.expected}`);
  }
}

function intSchema(name, min, max) {
  const s = new Schema(name, (v, path) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw s.wrong(v, path);
    if (v < min || v > max) throw new SettingsError(formatPath(path), `invalid value: integer \`${v}\`, expected ${name}`);
    return v;
  }, () => 0);
  return s;
}

/** Schema constructors: `settings.object({ name: settings.string(), ttl: settings.u32().default(900) })`. */
export const settings = {
  string() {
    const s = new Schema('a string', (v, path) => {
      if (typeof v !== 'string') throw s.wrong(v, path);
      return v;
    }, () => '');
    return s;
  },
  bool() {
    const s = new Schema('a boolean', (v, path) => {
      if (typeof v !== 'boolean') throw s.wrong(v, path);
      return v;
    }, () => false);
    return s;
  },
  u8: () => intSchema('u8', 0, 0xff),
  u16: () => intSchema('u16', 0, 0xffff),
  u32: () => intSchema('u32', 0, 0xffffffff),
  i32: () => intSchema('i32', -0x80000000, 0x7fffffff),
  /** Any finite number. */
  number() {
    const s = new Schema('f64', (v, path) => {
      if (typeof v !== 'number') throw s.wrong(v, path);
      return v;
    }, () => 0);
    return s;
  },
  /** One of these strings. */
  oneOf(...choices) {
    const s = new Schema(quoteList(choices), (v, path) => {
      if (choices.includes(v)) return v;
      if (typeof v === 'string') throw new SettingsError(formatPath(path), `unknown variant \`${v}\`, expected ${quoteList(choices)}`);
      throw s.wrong(v, path);
    }, () => choices[0]);
    return s;
  },
  /** `null` or absent → `undefined`, else the inner schema. */
  optional(inner) {
    const s = new Schema(`option`, (v, path) => (v === null || v === undefined ? undefined : inner.convert(v, path)), () => undefined);
    s.optional = true;
    return s;
  },
  list(item) {
    const s = new Schema('a sequence', (v, path) => {
      if (!Array.isArray(v)) throw s.wrong(v, path);
      return v.map((x, i) => item.convert(x, [...path, i]));
    }, () => []);
    return s;
  },
  map(item) {
    const s = new Schema('a map', (v, path) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw s.wrong(v, path);
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, item.convert(x, [...path, k])]));
    }, () => ({}));
    return s;
  },
  any: () => new Schema('any value', (v) => v, () => null),
  /** A struct: unknown keys are refused, keys without `.default()` (or `optional`) are required. */
  object(fields) {
    const names = Object.keys(fields);
    const s = new Schema(`struct`, (v, path) => {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw s.wrong(v, path);
      const out = {};
      for (const [key, value] of Object.entries(v)) {
        if (!Object.prototype.hasOwnProperty.call(fields, key)) {
          const expected = quoteList(names);
          throw new SettingsError(
            formatPath([...path, key]),
            `unknown field \`${key}\`, ` + (expected ? `expected ${expected}` : 'there are no fields'),
          );
        }
        out[key] = fields[key].convert(value, [...path, key]);
      }
      for (const name of names) {
        if (name in out) continue;
        const f = fields[name];
        if (f.hasDefault) out[name] = structuredCloneish(f.defaultValue);
        else if (f.optional) out[name] = undefined;
        else throw new SettingsError(formatPath([...path, name]), `missing field \`${name}\``);
      }
      return out;
    }, () => defaults(fields));
    return s;
  },
};

function structuredCloneish(v) {
  return v !== null && typeof v === 'object' ? JSON.parse(JSON.stringify(v)) : v;
}

function defaults(fields) {
  const out = {};
  for (const [name, f] of Object.entries(fields)) out[name] = f.hasDefault ? structuredCloneish(f.defaultValue) : f.empty();
  return out;
}

/** Parses a settings document against `schema` (a `settings.object(...)`, or `undefined`
 * for a policy without settings, which accepts only `{}`, `null` or nothing). A blank
 * document or `null` gives every field its default. Throws `SettingsError`. */
export function parseSettings(text, schema) {
  if (typeof text !== 'string') throw new TypeError('settings must be JSON text');
  const trimmed = text.trim();
  schema = schema ?? settings.object({});
  if (trimmed === '' || trimmed === 'null') return schema.empty();
  let doc;
  try {
    doc = JSON.parse(trimmed);
  } catch (error) {
    throw new SettingsError('', String(error.message));
  }
  return schema.convert(doc, []);
}

// ---------------------------------------------------------------------------------------
// Capabilities: the host's imports inside a component, `testing`'s stand-in natively.

let hostImports = {};

/** Used by the generated entry module (and by `testing`): the capability imports. */
export function setHost(imports) {
  hostImports = imports;
}

function capability(name) {
  const found = hostImports[name];
  if (!found) {
    throw new Error(
      `the policy calls the \`${name}\` capability but does not list it: add "${name}" to "portcullis": {"capabilities": [...]} in its package.json`,
    );
  }
  return found;
}

/** Capability `log`. Levels: trace, debug, info, warn, error. */
export const log = {
  write(level, message) {
    if (!['trace', 'debug', 'info', 'warn', 'error'].includes(level)) throw new Error(`unknown log level ${level}`);
    capability('log').write(level, String(message));
  },
  trace: (m) => log.write('trace', m),
  debug: (m) => log.write('debug', m),
  info: (m) => log.write('info', m),
  warn: (m) => log.write('warn', m),
  error: (m) => log.write('error', m),
};

/** Capability `clock`: milliseconds since the epoch, as a BigInt-free number. */
export const clock = { nowMs: () => Number(capability('clock').nowMs()) };

/** Capability `rate-limit`: `take(key, limit, windowMs)` → `{allowed, remaining, resetAfterMs}`. */
export const rateLimit = {
  take(key, limit, windowMs) {
    const t = capability('rate-limit').take(key, limit, BigInt(windowMs));
    return { allowed: t.allowed, remaining: t.remaining, resetAfterMs: Number(t.resetAfterMs) };
  },
};

/** Capability `data`: read-only named data sets. */
export const data = {
  contains: (set, key) => capability('data').contains(set, key),
  get: (set, key) => capability('data').get(set, key) ?? undefined,
};

// ---------------------------------------------------------------------------------------
// Policies and the export

/** Declares a policy: `{ metadata(), settings?, validate?(settings), onRequest?(settings, req),
 * onResponse?(settings, req, resp) }`. `validate` throws (or returns) a `SettingsError`. */
export function definePolicy(policy) {
  if (typeof policy.metadata !== 'function') throw new TypeError('a policy must define metadata()');
  return {
    validate: () => undefined,
    onRequest: () => allow(),
    onResponse: () => allow(),
    ...policy,
  };
}

/** Parses and validates settings the way the component's `init` does (for unit tests).
 * Returns the settings or throws `SettingsError`. */
export function checkSettings(policy, text) {
  const parsed = parseSettings(text, policy.settings);
  const error = policy.validate(parsed);
  if (error instanceof SettingsError) throw error;
  return parsed;
}

/** The fail-closed outcome when settings no longer parse at call time. */
export function settingsFailure(error) {
  const reason = error.setting
    ? `the policy's setting ${error.setting} is invalid: ${error.message}`
    : `the policy's settings are invalid: ${error.message}`;
  return deny(500, 'policy-settings', reason);
}

/** The `portcullis:policy/handler` export for a policy; `getSettings` is the `settings`
 * import's `get`. The generated entry module calls this. */
export function exportPolicy(policy, getSettings) {
  // The last settings text and what it parsed to. With a fresh instance per call (the
  // default) this never hits; when the host reuses the instance (`reuse` in its config),
  // the settings are parsed once per instance rather than on every call. The parsed object
  // is then shared by later calls: treat it as read-only.
  let lastText;
  let lastParsed;
  const callSettings = () => {
    const text = getSettings();
    if (text !== lastText) {
      lastParsed = parseSettings(text, policy.settings);
      lastText = text;
    }
    return lastParsed;
  };
  const run = (fn) => {
    let parsed;
    try {
      parsed = callSettings();
    } catch (error) {
      if (error instanceof SettingsError) return settingsFailure(error).toWit();
      throw error;
    }
    return asOutcome(fn(parsed)).toWit();
  };
  return {
    metadata() {
      const meta = policy.metadata();
      return meta instanceof Metadata ? meta.build() : meta;
    },
    init(text) {
      try {
        checkSettings(policy, text);
      } catch (error) {
        // componentize-js turns a thrown object with `payload` into `err(payload)`.
        if (error instanceof SettingsError) throw { payload: error.toWit() };
        throw error;
      }
    },
    onRequest(request) {
      return run((s) => policy.onRequest(s, request));
    },
    onResponse(request, response) {
      return run((s) => policy.onResponse(s, request, response));
    },
  };
}
