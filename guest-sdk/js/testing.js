// Constructors for the boundary values and a stand-in host, for native unit tests of
// JavaScript policies (`node --test`). Mirrors portcullis_guest.testing (Python).
//
//     import { request, agent } from '../../../guest-sdk/js/testing.js';
//     const req = request('POST', '/invoices', { principal: agent('copilot', { onBehalfOf: 'alice' }) });

import { setHost } from './portcullis-guest.js';

function principal(kind, id, { scopes = [], claims = [], onBehalfOf, credentialId } = {}) {
  return { kind, id, scopes: [...scopes], claims: claims.map(([k, v]) => [k, v]), onBehalfOf, credentialId };
}

export const anonymous = () => principal('anonymous', '');
export const user = (id, options) => principal('user', id, options);
export const service = (id, options) => principal('service', id, options);
export const agent = (id, options) => principal('agent', id, options);

/** A body; `data` is a string (UTF-8) or bytes. */
export function body(contentType, data, truncated = false) {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : Uint8Array.from(data);
  return { contentType, bytes, truncated };
}

/** A request as the host passes it. `options.json` sets a JSON body. */
export function request(method, path, options = {}) {
  let { query = [] } = options;
  const {
    id = 'test',
    scheme = 'https',
    authority = 'api.example.com',
    headers = [],
    principal: who = anonymous(),
    operation,
    clientAddress,
    receivedAtMs = 0n,
    json,
  } = options;
  let b = options.body;
  if (json !== undefined) b = body('application/json', typeof json === 'string' ? json : JSON.stringify(json));
  // A query string in the path is split into `query`, as the host does.
  const q = path.indexOf('?');
  if (q >= 0) {
    query = [...query, ...path.slice(q + 1).split('&').filter(Boolean).map((pair) => {
      const eq = pair.indexOf('=');
      return eq < 0 ? [pair, ''] : [pair.slice(0, eq), pair.slice(eq + 1)];
    })];
    path = path.slice(0, q);
  }
  return { id, method, scheme, authority, path, query, headers, body: b, principal: who, operation, clientAddress, receivedAtMs };
}

/** A response as the host passes it. */
export function response(status, options = {}) {
  const { headers = [], json } = options;
  let b = options.body;
  if (json !== undefined) b = body('application/json', typeof json === 'string' ? json : JSON.stringify(json));
  return { status, headers, body: b };
}

// The stand-in host: counters, data sets, a clock and a log kept in memory.
const fake = { now: 0n, data: new Map(), logs: [], counters: new Map() };

export function setNowMs(ms) {
  fake.now = BigInt(ms);
}
export function insertData(set, key, value = '') {
  if (!fake.data.has(set)) fake.data.set(set, new Map());
  fake.data.get(set).set(key, value);
}
export const logs = () => [...fake.logs];
export function reset() {
  fake.now = 0n;
  fake.data.clear();
  fake.logs.length = 0;
  fake.counters.clear();
}

setHost({
  log: { write: (level, message) => fake.logs.push([level, message]) },
  clock: { nowMs: () => fake.now },
  'rate-limit': {
    take(key, limit, windowMs) {
      const used = (fake.counters.get(key) ?? 0) + 1;
      fake.counters.set(key, used);
      return { allowed: used <= limit, remaining: Math.max(0, limit - used), resetAfterMs: BigInt(windowMs) };
    },
  },
  data: {
    contains: (set, key) => fake.data.get(set)?.has(key) ?? false,
    get: (set, key) => fake.data.get(set)?.get(key),
  },
});
