// Unit tests that run natively, without building the component: `node --test` here.
// `portcullis test tests/` then checks the built component against recorded traffic.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { asOutcome, checkSettings } from '{{sdk_js}}/portcullis-guest.js';
import { agent, request, user } from '{{sdk_js}}/testing.js';
import Policy from './policy.js';

const decide = (req, json = '{}') => asOutcome(Policy.onRequest(checkSettings(Policy, json), req));

test('agents read', () => {
  assert.equal(decide(request('GET', '/notes/1', { principal: agent('bot', { onBehalfOf: 'alice' }) })).kind(), 'allow');
});

test('agents may not write', () => {
  const outcome = decide(request('DELETE', '/notes/1', { principal: agent('bot', { onBehalfOf: 'alice' }) }));
  assert.equal(outcome.kind(), 'deny');
  assert.equal(outcome.denial().code, 'agent-read-only');
});

test('users write', () => {
  assert.equal(decide(request('POST', '/notes', { principal: user('alice') })).kind(), 'allow');
});

test('settings widen what agents may do', () => {
  const req = request('POST', '/notes', { principal: agent('bot', { onBehalfOf: 'alice' }) });
  assert.equal(decide(req, '{"agent_methods": ["get", "post"]}').kind(), 'allow');
});
