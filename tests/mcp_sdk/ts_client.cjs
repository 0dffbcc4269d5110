// An MCP client built with the official TypeScript SDK, for tests/mcp_sdks.rs: runs the same
// scripted steps as py_client.py (see README.md here) and prints one JSON line per event.
//
//   NODE_PATH=target/mcp-node/node_modules node ts_client.cjs URL STEPS_JSON --sdk v1|v2
//       [--mode legacy|auto|2026-07-28] [--header NAME:VALUE]... [--bearer TOKEN]
//
// --sdk v1: `@modelcontextprotocol/sdk` 1.x, the 2025 handshake only (`--mode` must be legacy).
// --sdk v2: `@modelcontextprotocol/client` 2.x: `legacy` (2025 handshake), `auto` (probe
//           `server/discover`, fall back), or `2026-07-28` (pinned). It declares elicitation
//           (form and URL) and answers an InputRequiredResult's URL elicitation as the step
//           says ("elicit", "wait_file"), then retries with the echoed requestState. A step
//           with "retry": false switches the whole client to manual mode (no automatic
//           retries; every call's InputRequiredResult is printed as {"input_required": …}).
'use strict';

const fs = require('node:fs');

function emit(line) {
    process.stdout.write(JSON.stringify(line) + '\n');
}

function parseArgs(argv) {
    const [url, stepsJson, ...rest] = argv;
    const opts = { url, steps: JSON.parse(stepsJson), headers: {}, mode: 'legacy', sdk: undefined };
    while (rest.length) {
        const flag = rest.shift();
        if (flag === '--header') {
            const value = rest.shift();
            const at = value.indexOf(':');
            opts.headers[value.slice(0, at).trim()] = value.slice(at + 1).trim();
        } else if (flag === '--bearer') {
            opts.headers.Authorization = `Bearer ${rest.shift()}`;
        } else if (flag === '--mode') {
            opts.mode = rest.shift();
        } else if (flag === '--sdk') {
            opts.sdk = rest.shift();
        } else {
            throw new Error(`unknown flag ${flag}`);
        }
    }
    if (!['v1', 'v2'].includes(opts.sdk)) throw new Error('--sdk v1|v2 is required');
    if (opts.sdk === 'v1' && opts.mode !== 'legacy') throw new Error('the v1 SDK speaks only the 2025 handshake (--mode legacy)');
    return opts;
}

async function waitFor(path) {
    while (!fs.existsSync(path)) await new Promise((r) => setTimeout(r, 50));
    return fs.readFileSync(path, 'utf8').trim();
}

function errorOf(e) {
    if (e && typeof e.code === 'number') return { error: { code: e.code, message: e.message, data: e.data ?? null } };
    return { error: { code: null, message: String(e && e.message ? e.message : e), data: null } };
}

function connect(opts, current) {
    const headers = opts.headers;
    const elicit = async (request) => {
        emit({ step: current.index, elicitation: request.params });
        let action = current.step.elicit ?? 'accept';
        if (current.step.wait_file) action = (await waitFor(current.step.wait_file)) || action;
        return { action };
    };
    if (opts.sdk === 'v1') {
        const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
        const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
        const { ElicitRequestSchema } = require('@modelcontextprotocol/sdk/types.js');
        const client = new Client(
            { name: 'portcullis-test-v1', version: '1.0.0' },
            { capabilities: { elicitation: { form: {}, url: {} } } },
        );
        client.setRequestHandler(ElicitRequestSchema, elicit);
        const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers } });
        return { client, transport, protocol: () => transport.protocolVersion, manual: false };
    }
    const { Client, StreamableHTTPClientTransport } = require('@modelcontextprotocol/client');
    const manual = opts.steps.some((s) => s.retry === false);
    const mode = opts.mode === 'legacy' || opts.mode === 'auto' ? opts.mode : { pin: opts.mode };
    const client = new Client(
        { name: 'portcullis-test-v2', version: '2.0.0' },
        {
            capabilities: { elicitation: { form: {}, url: {} } },
            versionNegotiation: { mode },
            inputRequired: { autoFulfill: !manual },
        },
    );
    client.setRequestHandler('elicitation/create', elicit);
    const transport = new StreamableHTTPClientTransport(new URL(opts.url), { requestInit: { headers } });
    return { client, transport, protocol: () => client.getNegotiatedProtocolVersion() ?? transport.protocolVersion, manual };
}

async function runStep(client, step, results, manual) {
    try {
        switch (step.op) {
            case 'list_tools': {
                const listed = await client.listTools();
                return {
                    tools: listed.tools.map((t) => t.name),
                    annotations: Object.fromEntries(listed.tools.filter((t) => t.annotations).map((t) => [t.name, t.annotations])),
                    schemas: Object.fromEntries(listed.tools.map((t) => [t.name, t.inputSchema])),
                };
            }
            case 'call': {
                const params = { name: step.tool, arguments: step.args ?? {} };
                if ('approval_from' in step) {
                    params._meta = { 'portcullis/approval': results[step.approval_from].error.data.approval.id };
                }
                const result = await client.callTool(params, manual ? { allowInputRequired: true } : undefined);
                if (result && result.resultType === 'input_required') return { input_required: result };
                return { result };
            }
            case 'listen': {
                // A `subscriptions/listen` stream with `filter`; once acknowledged, the
                // `trigger` call runs, and the change notifications of `wait_s` seconds are kept.
                const events = [];
                const kinds = ['tools/list_changed', 'prompts/list_changed', 'resources/list_changed', 'resources/updated'];
                for (const kind of kinds) {
                    client.setNotificationHandler(`notifications/${kind}`, (n) => {
                        events.push({ method: n.method, params: n.params ?? {} });
                    });
                }
                const subscription = await client.listen(step.filter ?? {});
                if (step.trigger) await client.callTool({ name: step.trigger.tool, arguments: step.trigger.args ?? {} });
                await new Promise((resolve) => setTimeout(resolve, (step.wait_s ?? 2) * 1000));
                await subscription.close();
                return { honored: subscription.honoredFilter, events };
            }
            case 'read':
                return { result: await client.readResource({ uri: step.uri }) };
            case 'prompt':
                return { result: await client.getPrompt({ name: step.name, arguments: step.args ?? {} }) };
            case 'approve': {
                const approval = results[step.from].error.data.approval.id;
                const answer = await fetch(`${step.admin}/approvals/${approval}/approve`, {
                    method: 'POST',
                    headers: { authorization: `Bearer ${step.token}`, 'content-type': 'application/json' },
                    body: JSON.stringify({ by: 'fiona@example.com' }),
                });
                return { approved: approval, status: answer.status };
            }
            default:
                throw new Error(`unknown step ${step.op}`);
        }
    } catch (e) {
        return errorOf(e);
    }
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const current = { index: -1, step: {} };
    const { client, transport, protocol, manual } = connect(opts, current);
    try {
        await client.connect(transport);
    } catch (e) {
        emit({ connect_error: String(e && e.message ? e.message : e), ...errorOf(e) });
        return;
    }
    emit({ connected: { protocol: protocol() ?? null } });
    const results = [];
    for (const [index, step] of opts.steps.entries()) {
        current.index = index;
        current.step = step;
        const out = await runStep(client, step, results, manual);
        results.push(out);
        emit({ step: index, ...out });
    }
    await client.close().catch(() => {});
}

main().then(
    () => process.exit(0),
    (e) => {
        console.error(e);
        process.exit(1);
    },
);
