// Native unit tests of agent-guard: `node --test` here, or scripts/build-js-policies.sh --test.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SettingsError, asOutcome, checkSettings } from '../../../guest-sdk/js/portcullis-guest.js';
import { agent, anonymous, request, service, user } from '../../../guest-sdk/js/testing.js';
import AgentGuard from './policy.js';

const settings = (json = '{"approver_group": "ops"}') => checkSettings(AgentGuard, json);
const decide = (req, s = settings()) => asOutcome(AgentGuard.onRequest(s, req));
const agentRequest = (method) => request(method, '/invoices/7', { principal: agent('copilot', { onBehalfOf: 'alice' }) });

function settingsError(json) {
  try {
    settings(json);
  } catch (error) {
    assert.ok(error instanceof SettingsError, `${json}: ${error}`);
    return error;
  }
  assert.fail(`${json} was accepted`);
}

test('settings defaults', () => {
  const s = settings();
  assert.deepEqual([s.ttl_seconds, s.deny_without_on_behalf_of], [900, true]);
});

test('settings errors name the setting', () => {
  for (const [json, setting] of [
    ['{}', 'approver_group'],
    ['', 'approver_group'],
    ['{"approver_group": " "}', 'approver_group'],
    ['{"approver_group": "ops", "ttl_seconds": 0}', 'ttl_seconds'],
    ['{"approver_group": "ops", "ttl_seconds": -1}', 'ttl_seconds'],
    ['{"approver_group": "ops", "ttl_seconds": 4294967296}', 'ttl_seconds'],
    ['{"approver_group": "ops", "ttl_seconds": "60"}', 'ttl_seconds'],
    ['{"approver_group": "ops", "deny_without_on_behalf_of": 1}', 'deny_without_on_behalf_of'],
    ['{"approver_group": "ops", "approvers": "x"}', 'approvers'],
  ]) {
    assert.equal(settingsError(json).setting, setting, json);
  }
});

test('settings messages follow the Rust SDK', () => {
  assert.equal(settingsError('{}').message, 'missing field `approver_group`');
  assert.equal(
    settingsError('{"approver_group": "ops", "approvers": "x"}').message,
    'unknown field `approvers`, expected one of `approver_group`, `ttl_seconds`, `deny_without_on_behalf_of`',
  );
});

test('agents may read', () => {
  for (const method of ['GET', 'HEAD', 'OPTIONS', 'get']) {
    const out = decide(agentRequest(method));
    assert.ok(out.isAllow(), method);
    assert.equal(out.labelValue('rule'), 'agent-read-only');
  }
});

test('agent writes need approval', () => {
  for (const method of ['POST', 'PUT', 'PATCH', 'CALL']) {
    const out = decide(agentRequest(method));
    const approval = out.approval();
    assert.ok(approval, method);
    assert.deepEqual([approval.approverGroup, approval.ttlSeconds], ['ops', 900]);
    assert.equal(approval.reason, `agent copilot acting for alice wants to ${method} /invoices/7`);
    assert.equal(out.labelValue('rule'), 'agent-write-needs-approval');
  }
});

test('agent delete is denied', () => {
  const denial = decide(agentRequest('DELETE')).denial();
  assert.deepEqual([denial.status, denial.code], [403, 'agent-delete-forbidden']);
  assert.equal(denial.reason, 'agents may not delete: DELETE /invoices/7');
});

test('agent without user is denied unless allowed by settings', () => {
  const req = request('GET', '/', { principal: agent('bot') });
  const out = decide(req);
  assert.equal(out.denial().code, 'agent-without-user');
  assert.equal(out.denial().reason, 'agent bot must act on behalf of a user');
  // An empty on-behalf-of counts as none.
  assert.equal(decide(request('GET', '/', { principal: agent('bot', { onBehalfOf: '' }) })).denial().code, 'agent-without-user');
  const lenient = settings('{"approver_group": "ops", "deny_without_on_behalf_of": false}');
  assert.ok(decide(req, lenient).isAllow());
  const approval = decide(request('POST', '/', { principal: agent('bot') }), lenient).approval();
  assert.equal(approval.reason, 'agent bot acting for no user wants to POST /');
});

test('other principals pass', () => {
  for (const who of [user('alice'), service('crm'), anonymous()]) {
    const out = decide(request('DELETE', '/x', { principal: who }));
    assert.ok(out.isAllow());
    assert.equal(out.labelValue('rule'), 'not-an-agent');
  }
});

test('the wit outcome has the shape componentize-js expects', () => {
  assert.deepEqual(decide(agentRequest('PATCH')).toWit(), {
    decision: {
      tag: 'require-approval',
      val: { reason: 'agent copilot acting for alice wants to PATCH /invoices/7', approverGroup: 'ops', ttlSeconds: 900 },
    },
    labels: [['rule', 'agent-write-needs-approval']],
  });
});
