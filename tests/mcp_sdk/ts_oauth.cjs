// OAuth with the TypeScript v2 SDK (`@modelcontextprotocol/client`) against the MCP door as a
// resource server, for tests/mcp_oauth.rs:
//
//   node ts_oauth.cjs URL ISSUER CLIENT_ID CLIENT_SECRET OTHER_AUDIENCE_TOKEN STEPS_JSON
//
// Prints JSON lines:
//   {"challenge": {...}}   the SDK's `extractWWWAuthenticateParams` on the door's 401 to a
//                          request without a token, and `discoverOAuthProtectedResourceMetadata`
//                          from the URL it names;
//   {"other_audience": {...}}  the same parse of the 401 to a token for another audience;
//   {"connected": {...}}, then {"step": I, ...} per step: a session whose transport uses the
//                          SDK's `ClientCredentialsProvider` (401 -> metadata -> authorization
//                          server metadata -> token -> call; 403 insufficient_scope -> step-up),
//                          steps as in ts_client.cjs (`list_tools`, `call`);
//   {"error": "..."} when the session fails.
'use strict';

const {
    Client,
    StreamableHTTPClientTransport,
    ClientCredentialsProvider,
    extractWWWAuthenticateParams,
    discoverOAuthProtectedResourceMetadata,
} = require('@modelcontextprotocol/client');

const emit = (line) => process.stdout.write(JSON.stringify(line) + '\n');

async function challenge(url, token) {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    if (token) headers.authorization = `Bearer ${token}`;
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} });
    const res = await fetch(url, { method: 'POST', headers, body });
    const params = extractWWWAuthenticateParams(res);
    const out = {
        status: res.status,
        resourceMetadataUrl: params.resourceMetadataUrl?.toString(),
        scope: params.scope,
        error: params.error,
    };
    if (params.resourceMetadataUrl) {
        out.metadata = await discoverOAuthProtectedResourceMetadata(url, { resourceMetadataUrl: params.resourceMetadataUrl });
    }
    return out;
}

async function main() {
    const [url, issuer, clientId, clientSecret, otherToken, stepsJson] = process.argv.slice(2);
    emit({ challenge: await challenge(url) });
    emit({ other_audience: await challenge(url, otherToken) });
    const provider = new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer: issuer });
    const client = new Client({ name: 'portcullis-oauth-v2', version: '2.0.0' }, { capabilities: {} });
    const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    try {
        await client.connect(transport);
        emit({ connected: { protocol: client.getNegotiatedProtocolVersion() ?? transport.protocolVersion } });
        const steps = JSON.parse(stepsJson);
        for (const [index, step] of steps.entries()) {
            let out;
            try {
                if (step.op === 'list_tools') {
                    out = { tools: (await client.listTools()).tools.map((t) => t.name) };
                } else if (step.op === 'call') {
                    out = { result: await client.callTool({ name: step.tool, arguments: step.args ?? {} }) };
                } else {
                    throw new Error(`unknown step ${step.op}`);
                }
            } catch (e) {
                out = { error: { message: String(e && e.message ? e.message : e), name: e && e.constructor && e.constructor.name } };
            }
            emit({ step: index, ...out });
        }
    } catch (e) {
        emit({ error: String(e && e.stack ? e.stack : e) });
    } finally {
        await client.close().catch(() => {});
    }
}

main().catch((e) => {
    emit({ error: String(e && e.stack ? e.stack : e) });
    process.exitCode = 1;
});
