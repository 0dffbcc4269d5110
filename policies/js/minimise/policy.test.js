// Native unit tests of minimise: `node --test` here, or scripts/build-js-policies.sh --test.
// The same cases as the Rust original's tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SettingsError, asOutcome, checkSettings } from '../../../guest-sdk/js/portcullis-guest.js';
import { agent, request, response, user } from '../../../guest-sdk/js/testing.js';
import Minimise, { globMatches, hostMatches, parseMask } from './policy.js';

const settings = (json) => checkSettings(Minimise, json);

function actionText(action) {
  if (action.tag === 'remove') return 'remove';
  if (action.tag === 'replace') return `replace:${action.val}`;
  const mask = action.val;
  return {
    'keep-last': () => `keep-last:${mask.val}`,
    'keep-email-domain': () => 'email-domain',
    'fixed-length': () => `fixed:${mask.val}`,
    pseudonym: () => 'pseudonym',
  }[mask.tag]();
}

/** The redactions as `json-name:X ACTION` / `detected:X ACTION`. */
const shown = (out) => asOutcome(out).redactions().map(({ target, action }) => `${target.tag}:${target.val} ${actionText(action)}`);

const get = (authority, path, principal) => request('GET', path, { authority, principal });
const onResponse = (s, req) => asOutcome(Minimise.onResponse(s, req, response(200)));

test('metadata takes both phases without bodies', () => {
  const m = Minimise.metadata().build();
  assert.deepEqual(m.phases, { request: true, response: true });
  assert.ok(!m.needsRequestBody && !m.needsResponseBody);
});

test('the payments rule masks names and detections in responses only', () => {
  const s = settings('{"rules": [{"fields": ["card_number", "iban"], "detect": ["card-number"], "mask": "keep-last:4"}]}');
  const out = onResponse(s, get('api.test', '/payments'));
  assert.deepEqual(shown(out), [
    'json-name:card_number keep-last:4',
    'json-name:iban keep-last:4',
    'detected:card-number keep-last:4',
  ]);
  assert.equal(out.labelValue('rules'), 'rules[0]');
  assert.ok(asOutcome(Minimise.onRequest(s, get('api.test', '/payments'))).isAllow());
});

test('every matching rule applies in order', () => {
  const s = settings(`{"first_party_hosts": ["api.test"], "rules": [
    {"name": "cards", "fields": ["card_number"], "mask": "keep-last:4", "direction": "both"},
    {"name": "agents", "detect": ["email"], "mask": "pseudonym", "principals": ["agent"]},
    {"name": "partners", "fields": ["card_number"], "mask": "fixed:8", "third_party": true},
    {"name": "notes", "fields": ["note"], "mask": "replace:[note]", "paths": ["/payments/**"]},
    {"name": "eu", "detect": ["iban"], "mask": "remove", "hosts": ["*.eu.test"], "direction": "request"}
  ]}`);
  let out = onResponse(s, get('API.test:8443', '/payments/7', agent('bot')));
  assert.deepEqual(shown(out), ['json-name:card_number keep-last:4', 'detected:email pseudonym', 'json-name:note replace:[note]']);
  assert.equal(out.labelValue('rules'), 'cards,agents,notes');
  const partner = get('pay.eu.test', '/refunds', user('alice'));
  out = onResponse(s, partner);
  assert.deepEqual(shown(out), ['json-name:card_number keep-last:4', 'json-name:card_number fixed:8']);
  assert.equal(out.labelValue('rules'), 'cards,partners');
  out = asOutcome(Minimise.onRequest(s, partner));
  assert.deepEqual(shown(out), ['json-name:card_number keep-last:4', 'detected:iban remove']);
  assert.equal(out.labelValue('rules'), 'cards,eu');
});

test('no matching rule allows without labels', () => {
  const s = settings('{"rules": [{"detect": ["jwt"], "mask": "remove", "paths": ["/auth/*"]}]}');
  const out = onResponse(s, get('api.test', '/auth/a/b'));
  assert.ok(out.isAllow());
  assert.deepEqual(out.labels, []);
  assert.deepEqual(shown(onResponse(s, get('api.test', '/auth/a'))), ['detected:jwt remove']);
});

test('defaults come first and are stricter for agents and third parties', () => {
  const s = settings('{"defaults": true, "first_party_hosts": ["*.bank.test"], "rules": [{"fields": ["note"], "mask": "remove"}]}');
  const alice = get('api.bank.test', '/x', user('alice'));
  assert.equal(onResponse(s, alice).labelValue('rules'), 'default-cards,default-iban,default-secrets,rules[0]');
  assert.ok(asOutcome(Minimise.onRequest(s, alice)).isAllow());
  let out = onResponse(s, get('api.bank.test', '/x', agent('bot')));
  assert.equal(
    out.labelValue('rules'),
    'default-cards,default-iban,default-secrets,default-agent-email,default-agent-phone,rules[0]',
  );
  assert.ok(shown(out).includes('detected:email email-domain'));
  assert.ok(shown(out).includes('detected:phone fixed:8'));
  out = asOutcome(Minimise.onRequest(s, get('crm.partner.test', '/x')));
  assert.equal(out.labelValue('rules'), 'default-third-party');
  assert.deepEqual(shown(out), [
    'json-name:card_number fixed:8',
    'json-name:iban fixed:8',
    'detected:card-number fixed:8',
    'detected:iban fixed:8',
    'detected:email fixed:8',
    'detected:phone fixed:8',
  ]);
});

test('masks parse', () => {
  for (const text of ['keep-last:4', 'keep-last:0', 'email-domain', 'fixed:256', 'pseudonym', 'remove', 'replace:', 'replace:a:b']) {
    assert.equal(actionText(parseMask(text)), text);
  }
  for (const text of ['keep-last:', 'keep-last:-1', 'keep-last:1001', 'keep-last:+4', 'fixed:0', 'fixed:257', 'hash', '']) {
    assert.equal(typeof parseMask(text), 'string', text);
  }
});

test('bad settings name the setting', () => {
  for (const [json, setting] of [
    ['{}', 'rules'],
    ['{"rules": [{"mask": "remove"}]}', 'rules[0]'],
    ['{"rules": [{"fields": ["a"]}]}', 'rules[0].mask'],
    ['{"rules": [{"fields": ["a"], "mask": "keep-last:x"}]}', 'rules[0].mask'],
    ['{"rules": [{"fields": ["a"], "mask": "remove"}, {"fields": [""], "mask": "remove"}]}', 'rules[1].fields[0]'],
    ['{"rules": [{"detect": ["email", "ssn"], "mask": "remove"}]}', 'rules[0].detect[1]'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "direction": "up"}]}', 'rules[0].direction'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "hosts": ["https://x"]}]}', 'rules[0].hosts[0]'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "paths": ["x/**"]}]}', 'rules[0].paths[0]'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "principals": ["bot"]}]}', 'rules[0].principals[0]'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "name": "a,b"}]}', 'rules[0].name'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "third_party": true}]}', 'first_party_hosts'],
    ['{"defaults": true}', 'first_party_hosts'],
    ['{"defaults": true, "first_party_hosts": ["a b"]}', 'first_party_hosts[0]'],
    ['{"rules": [{"detect": ["email"], "mask": "remove", "route": "x"}]}', 'rules[0].route'],
    ['{"default": true}', 'default'],
  ]) {
    assert.throws(() => settings(json), (e) => e instanceof SettingsError && e.setting === setting, json);
  }
});

test('globs and hosts', () => {
  assert.ok(globMatches('/payments/**', '/payments'));
  assert.ok(globMatches('/payments/*/card', '/payments/7/card'));
  assert.ok(!globMatches('/payments/*', '/payments/7/card'));
  assert.ok(hostMatches('*.bank.test', 'eu.bank.test'));
  assert.ok(!hostMatches('*.bank.test', 'bank.test'));
  assert.ok(!hostMatches('*.bank.test', 'evilbank.test'));
  assert.ok(hostMatches('API.test', 'api.test'));
});
