// Native unit tests of pii-redact: `node --test` here, or scripts/build-js-policies.sh --test.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SettingsError, asOutcome, checkSettings } from '../../../guest-sdk/js/portcullis-guest.js';
import { request, response } from '../../../guest-sdk/js/testing.js';
import PiiRedact from './policy.js';

const settings = (json) => checkSettings(PiiRedact, json);

/** The redactions as [pointer, mask] pairs, headers as `header:NAME`. */
function pointers(out) {
  return asOutcome(out).redactions().map(({ target, action }) => {
    const name = target.tag === 'json-pointer' ? target.val : `${target.tag}:${target.val}`;
    return [name, action.tag === 'replace' ? action.val : null];
  });
}

test('metadata takes both phases without bodies', () => {
  const m = PiiRedact.metadata().build();
  assert.deepEqual(m.phases, { request: true, response: true });
  assert.ok(!m.needsRequestBody && !m.needsResponseBody);
});

test('response fields are removed and headers stripped', () => {
  const s = settings('{"fields": ["/email", "/customers/*/phone"], "headers": ["X-User-Email"]}');
  const out = asOutcome(PiiRedact.onResponse(s, request('GET', '/c'), response(200)));
  assert.deepEqual(pointers(out), [['/email', null], ['/customers/*/phone', null], ['header:X-User-Email', null]]);
  assert.equal(out.labelValue('rule'), 'response');
});

test('mask replaces instead of removing', () => {
  const s = settings('{"fields": ["/email"], "mask": "***"}');
  assert.deepEqual(pointers(PiiRedact.onResponse(s, request('GET', '/c'), response(200))), [['/email', '***']]);
});

test('requests to third parties are redacted, others pass', () => {
  const s = settings('{"fields": ["/email"], "third_party_hosts": ["crm.partner.io", "*.analytics.example"]}');
  for (const authority of ['crm.partner.io', 'CRM.Partner.io:8443', 'eu.analytics.example']) {
    const out = asOutcome(PiiRedact.onRequest(s, request('POST', '/x', { authority })));
    assert.deepEqual(pointers(out), [['/email', null]], authority);
    assert.equal(out.labelValue('rule'), 'third-party-request');
  }
  for (const authority of ['api.example.com', 'analytics.example', 'evilcrm.partner.io', 'xanalytics.example']) {
    assert.ok(asOutcome(PiiRedact.onRequest(s, request('POST', '/x', { authority }))).isAllow(), authority);
  }
});

test('star covers every host', () => {
  const s = settings('{"fields": ["/email"], "third_party_hosts": ["*"]}');
  assert.deepEqual(pointers(PiiRedact.onRequest(s, request('POST', '/', { authority: 'x.test' }))), [['/email', null]]);
});

test('headers-only settings allow requests to third parties unchanged', () => {
  const s = settings('{"headers": ["x-email"], "third_party_hosts": ["p.io"]}');
  assert.ok(asOutcome(PiiRedact.onRequest(s, request('POST', '/', { authority: 'p.io' }))).isAllow());
});

test('bad settings name the setting', () => {
  for (const [json, setting] of [
    ['{}', 'fields'],
    ['{"fields": ["/ok", "email"]}', 'fields[1]'],
    ['{"fields": ["/a~2b"]}', 'fields[0]'],
    ['{"fields": ["/a~"]}', 'fields[0]'],
    ['{"fields": ["/a"], "third_party_hosts": ["https://x.io"]}', 'third_party_hosts[0]'],
    ['{"fields": ["/a"], "third_party_hosts": ["*."]}', 'third_party_hosts[0]'],
    ['{"fields": ["/a"], "headers": [""]}', 'headers[0]'],
    ['{"fields": ["/a"], "mask": 3}', 'mask'],
    ['{"fields": ["/a", 7]}', 'fields[1]'],
    ['{"field": ["/a"]}', 'field'],
  ]) {
    assert.throws(() => settings(json), (e) => e instanceof SettingsError && e.setting === setting, json);
  }
});

test('null mask means remove', () => {
  const s = settings('{"fields": ["/email"], "mask": null}');
  assert.deepEqual(pointers(PiiRedact.onResponse(s, request('GET', '/'), response(200))), [['/email', null]]);
});
