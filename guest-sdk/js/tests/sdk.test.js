// Native tests of the JavaScript SDK: `node --test tests/` here, or
// scripts/build-js-policies.sh --test.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as g from '../portcullis-guest.js';
import * as t from '../testing.js';

test('headers are case-insensitive, query is not', () => {
  const req = t.request('GET', '/', { headers: [['x-a', '1'], ['X-A', '2']], query: [['Page', '1']] });
  assert.equal(g.header(req, 'X-a'), '1');
  assert.deepEqual(g.headerValues(req, 'x-A'), ['1', '2']);
  assert.equal(g.query(req, 'Page'), '1');
  assert.equal(g.query(req, 'page'), undefined);
});

test('query string in the path is split', () => {
  const req = t.request('GET', '/a?page=2&flag&x=1');
  assert.equal(req.path, '/a');
  assert.deepEqual(req.query, [['page', '2'], ['flag', ''], ['x', '1']]);
});

test('principal checks', () => {
  const req = t.request('GET', '/', { principal: t.agent('bot', { scopes: ['a:read'], onBehalfOf: 'alice', claims: [['tenant', 'acme']] }) });
  assert.ok(g.isAgent(req) && g.isAgent(req.principal));
  assert.ok(g.hasScope(req, 'a:read') && !g.hasScope(req, 'a:write'));
  assert.equal(g.actingFor(req), 'alice');
  assert.equal(g.claim(req, 'tenant'), 'acme');
  assert.equal(g.actingFor(t.user('u', { onBehalfOf: '' })), undefined);
  assert.ok(g.isMethod(req, 'get') && !g.isMethod(req, 'post'));
});

test('host strips port, userinfo and brackets', () => {
  for (const [authority, expected] of [
    ['API.Example.com:8443', 'api.example.com'],
    ['example.com', 'example.com'],
    ['[::1]:8080', '::1'],
    ['[::1]', '::1'],
    ['user@host:1', 'host'],
    ['host:', 'host'],
    ['host:ab', 'host:ab'],
  ]) {
    assert.equal(g.host(t.request('GET', '/', { authority })), expected, authority);
  }
});

test('json body by content type or sniffing', () => {
  assert.equal(g.jsonPointer(t.request('POST', '/', { body: t.body('application/vnd.x+json', '{"a":{"b":[1,2]}}') }), '/a/b/1'), 2);
  assert.deepEqual(g.jsonBody(t.request('POST', '/', { body: t.body('text/plain', '  [1]') })), [1]);
  assert.equal(g.jsonBody(t.request('POST', '/', { body: t.body('text/html', '<p>{}</p>') })), undefined);
  assert.equal(g.jsonBody(t.request('POST', '/', { json: '{"a":' })), undefined);
  assert.equal(g.jsonBody(t.request('POST', '/', { json: '[NaN]' })), undefined);
  assert.equal(g.jsonBody(t.request('POST', '/', { body: t.body('application/json', [0x22, 0xff, 0x22]) })), undefined);
  assert.equal(g.jsonBody(t.request('GET', '/')), undefined);
});

test('json pointer with wildcards', () => {
  const doc = {
    customers: [{ email: 'a@x', phone: '1' }, { email: 'b@x' }, { email: null }],
    'm~n': { 'a/b': 5 },
    map: { 0: 'zero', k: 'v' },
  };
  assert.deepEqual(g.jsonPointerAll(doc, '/customers/*/email'), ['a@x', 'b@x', null]);
  assert.deepEqual(g.jsonPointerAll(doc, '/customers/*/phone'), ['1']);
  assert.deepEqual(g.jsonPointerAll(doc, '/map/*'), ['zero', 'v']);
  assert.equal(g.jsonPointer(doc, '/m~0n/a~1b'), 5);
  assert.equal(g.jsonPointer(doc, '/map/0'), 'zero');
  assert.equal(g.jsonPointer(doc, '/customers/1/email'), 'b@x');
  assert.deepEqual(g.jsonPointerAll(doc, '/customers/01/email'), []);
  assert.deepEqual(g.jsonPointerAll(doc, '/customers/-'), []);
  assert.deepEqual(g.jsonPointerAll(doc, '/nothing/*'), []);
  assert.deepEqual(g.jsonPointerAll(doc, ''), [doc]);
  assert.throws(() => g.jsonPointer(doc, 'customers'));
  assert.throws(() => g.jsonPointer(doc, '/a~2'));
  assert.deepEqual(g.jsonPointerAll(t.response(200, { json: { items: [{ id: 1 }, { id: 2 }] } }), '/items/*/id'), [1, 2]);
});

test('decisions', () => {
  const d = g.deny(403, 'nope', 'no').label('rule', 'r');
  assert.deepEqual(d.toWit(), { decision: { tag: 'deny', val: { status: 403, code: 'nope', reason: 'no' } }, labels: [['rule', 'r']] });
  assert.throws(() => g.deny(70000, 'x', 'y'));
  const r = g.redact().json('/a').jsonMask('/b', '***').header('x-k').queryMask('q', '?').build();
  assert.deepEqual(r.redactions().map((x) => [x.target.tag, x.target.val, x.action.tag]), [
    ['json-pointer', '/a', 'remove'],
    ['json-pointer', '/b', 'replace'],
    ['header', 'x-k', 'remove'],
    ['query', 'q', 'replace'],
  ]);
  const m = g.redact()
    .jsonName('card_number', g.masks.keepLast(4))
    .jsonName('cvc')
    .detected('email', g.masks.keepEmailDomain())
    .mask({ tag: 'header', val: 'x-customer' }, g.masks.pseudonym())
    .build();
  assert.deepEqual(m.redactions(), [
    { target: { tag: 'json-name', val: 'card_number' }, action: { tag: 'mask', val: { tag: 'keep-last', val: 4 } } },
    { target: { tag: 'json-name', val: 'cvc' }, action: { tag: 'remove' } },
    { target: { tag: 'detected', val: 'email' }, action: { tag: 'mask', val: { tag: 'keep-email-domain' } } },
    { target: { tag: 'header', val: 'x-customer' }, action: { tag: 'mask', val: { tag: 'pseudonym' } } },
  ]);
  assert.throws(() => g.masks.fixedLength(-1));
  const empty = g.redact().label('rule', 'x').build();
  assert.ok(empty.isAllow());
  assert.equal(empty.labelValue('rule'), 'x');
  assert.equal(g.requireApproval('why', 'ops').approval().ttlSeconds, 900);
  assert.equal(g.requireApproval('why', 'ops').ttl(60).approval().ttlSeconds, 60);
  assert.throws(() => g.asOutcome(undefined), TypeError);
});

test('settings', () => {
  const schema = g.settings.object({
    name: g.settings.string(),
    n: g.settings.u8().default(3),
    mode: g.settings.oneOf('a', 'b').default('a'),
    rules: g.settings.list(g.settings.object({ path: g.settings.string() })).default([]),
    mask: g.settings.optional(g.settings.string()),
  });
  assert.deepEqual(g.parseSettings('{"name":"x"}', schema), { name: 'x', n: 3, mode: 'a', rules: [], mask: undefined });
  assert.deepEqual(g.parseSettings(' null ', schema), { name: '', n: 3, mode: 'a', rules: [], mask: undefined });
  const err = (text) => {
    try {
      g.parseSettings(text, schema);
    } catch (e) {
      assert.ok(e instanceof g.SettingsError);
      return [e.setting, e.message];
    }
    assert.fail(text);
  };
  assert.deepEqual(err('{}'), ['name', 'missing field `name`']);
  assert.deepEqual(err('{"name":1}'), ['name', 'invalid type: integer `1`, expected a string']);
  assert.deepEqual(err('{"name":"x","n":300}'), ['n', 'invalid value: integer `300`, expected u8']);
  assert.deepEqual(err('{"name":"x","mode":"c"}'), ['mode', 'unknown variant `c`, expected `a` or `b`']);
  assert.deepEqual(err('{"name":"x","rules":[{"path":"/"},{"pth":"/"}]}')[0], 'rules[1].pth');
  assert.equal(err('{"name":')[0], '');
  assert.throws(() => g.parseSettings('{"a":1}', undefined), g.SettingsError);
  assert.deepEqual(g.parseSettings('{}', undefined), {});
});

test('settings failure is a 500 deny', () => {
  const out = g.settingsFailure(new g.SettingsError('x', 'bad'));
  assert.deepEqual([out.denial().status, out.denial().code], [500, 'policy-settings']);
});

test('handler exports the policy', () => {
  const policy = g.definePolicy({
    metadata: () => g.metadata('p', '1.0.0').bothPhases().needsResponseBody(),
    settings: g.settings.object({ code: g.settings.string() }),
    onRequest: (s, req) => g.deny(403, s.code, req.path),
  });
  let current = '{"code":"c"}';
  const handler = g.exportPolicy(policy, () => current);
  assert.deepEqual(handler.metadata(), {
    name: 'p', version: '1.0.0', phases: { request: true, response: true }, needsRequestBody: false, needsResponseBody: true,
  });
  assert.equal(handler.init(current), undefined);
  assert.throws(() => handler.init('{}'), (e) => e.payload.setting === 'code');
  assert.equal(handler.onRequest(t.request('GET', '/x')).decision.val.code, 'c');
  assert.equal(handler.onResponse(t.request('GET', '/x'), t.response(200)).decision.tag, 'allow');
  current = '{}';
  assert.equal(handler.onRequest(t.request('GET', '/x')).decision.val.code, 'policy-settings');
});

test('settings are parsed once per instance, and again when they change', () => {
  const seen = [];
  const policy = g.definePolicy({
    metadata: () => g.metadata('p', '1.0.0'),
    settings: g.settings.object({ code: g.settings.string() }),
    onRequest: (s) => {
      seen.push(s);
      return g.allow();
    },
  });
  let current = '{"code":"a"}';
  const handler = g.exportPolicy(policy, () => current);
  handler.onRequest(t.request('GET', '/x'));
  handler.onRequest(t.request('GET', '/y'));
  current = '{"code":"b"}';
  handler.onRequest(t.request('GET', '/z'));
  assert.ok(seen[0] === seen[1], 'the same text was parsed twice');
  assert.deepEqual([seen[1].code, seen[2].code], ['a', 'b']);
});

test('capabilities go to the stand-in host natively', () => {
  t.reset();
  t.setNowMs(1234);
  t.insertData('allow', 'k', 'v');
  assert.equal(g.clock.nowMs(), 1234);
  assert.ok(g.data.contains('allow', 'k') && !g.data.contains('allow', 'x'));
  assert.equal(g.data.get('allow', 'k'), 'v');
  g.log.info('hi');
  assert.deepEqual(t.logs(), [['info', 'hi']]);
  assert.deepEqual([g.rateLimit.take('k', 1, 1000).allowed, g.rateLimit.take('k', 1, 1000).allowed], [true, false]);
});
