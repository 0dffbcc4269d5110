"""OAuth with the official Python SDK (`mcp` 2.x) against the MCP door as a resource server,
for tests/mcp_oauth.rs. Two roles:

    python py_oauth.py as PORT_FILE LOG.jsonl CLIENT_ID CLIENT_SECRET JWT_SECRET [DOOR_ID DOOR_SECRET]
    python py_oauth.py client URL ISSUER CLIENT_ID CLIENT_SECRET STEPS_JSON [--mode M]

`as` is a tiny authorization server on 127.0.0.1:0 (its port written to PORT_FILE once it
listens): RFC 8414 metadata at `/.well-known/oauth-authorization-server` (issuer
`http://127.0.0.1:PORT`), and a token endpoint that grants `client_credentials` to CLIENT_ID
(HTTP Basic or form secret) and issues an HS256 JWT: `iss` the issuer, `aud` the request's
`resource` (RFC 8707), `sub` the client, `scope` the scopes asked. With DOOR_ID it also grants
RFC 8693 token exchange to that client (the MCP door): the `subject_token` must be a JWT signed
with JWT_SECRET whose `sub` is not `blocked` (else 400 `invalid_grant`); the new token has `aud`
the request's `audience` (or `resource`), the subject's `sub`, and `act: {"sub": DOOR_ID}`.
Each token request is one line of LOG.jsonl (`grant_type`, `resource`, `audience`, `scope`,
`subject_sub`).

`client` runs the SDK's own OAuth client (`ClientCredentialsOAuthProvider`: the 401's
`WWW-Authenticate`, the protected-resource metadata, the authorization server's metadata, the
token request, and a step-up on 403 `insufficient_scope`) and a session with the steps of
py_client.py (`list_tools`, `call`), printing the same JSON lines.
"""

import asyncio
import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt


def emit(line):
    print(json.dumps(line), flush=True)


def authorization_server(port_file, log_path, client_id, client_secret, secret, door_id=None, door_secret=None):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def issuer(self):
            return f"http://127.0.0.1:{self.server.server_address[1]}"

        def do_GET(self):
            if self.path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
                issuer = self.issuer()
                return self.answer(200, {
                    "issuer": issuer,
                    "token_endpoint": f"{issuer}/token",
                    "authorization_endpoint": f"{issuer}/authorize",
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                })
            self.answer(404, {"error": "not_found"})

        def do_POST(self):
            if self.path != "/token":
                return self.answer(404, {"error": "not_found"})
            length = int(self.headers.get("content-length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            who, given = form.get("client_id"), form.get("client_secret")
            basic = self.headers.get("authorization", "")
            if basic.lower().startswith("basic "):
                who, given = base64.b64decode(basic[6:]).decode().split(":", 1)
            line = {k: form.get(k) for k in ("grant_type", "resource", "audience", "scope")}
            exchange = form.get("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange"
            subject = None
            if exchange:
                try:
                    subject = jwt.decode(form.get("subject_token", ""), secret, algorithms=["HS256"],
                                         options={"verify_aud": False})
                    line["subject_sub"] = subject.get("sub")
                except jwt.PyJWTError:
                    subject = None
            with lock, open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(line) + "\n")
            if exchange and door_id:
                if who != door_id or given != door_secret:
                    return self.answer(401, {"error": "invalid_client"})
                if subject is None or subject.get("sub") == "blocked":
                    return self.answer(400, {"error": "invalid_grant"})
                now = int(time.time())
                claims = {"iss": self.issuer(), "aud": form.get("audience") or form.get("resource"),
                          "sub": subject["sub"], "act": {"sub": door_id}, "iat": now, "exp": now + 600}
                if form.get("scope"):
                    claims["scope"] = form["scope"]
                return self.answer(200, {
                    "access_token": jwt.encode(claims, secret, algorithm="HS256"),
                    "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "token_type": "Bearer", "expires_in": 600,
                })
            if form.get("grant_type") != "client_credentials":
                return self.answer(400, {"error": "unsupported_grant_type"})
            if who != client_id or given != client_secret:
                return self.answer(401, {"error": "invalid_client"})
            if not form.get("resource"):
                return self.answer(400, {"error": "invalid_target"})
            scope = form.get("scope", "")
            now = int(time.time())
            claims = {"iss": self.issuer(), "aud": form["resource"], "sub": who, "iat": now, "exp": now + 600}
            if scope:
                claims["scope"] = scope
            token = jwt.encode(claims, secret, algorithm="HS256")
            self.answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 600, "scope": scope})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


class Memory:
    """Token storage in memory (the SDK's `TokenStorage` protocol)."""

    def __init__(self):
        self.tokens, self.info = None, None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.info

    async def set_client_info(self, info):
        self.info = info


async def client(url, issuer, client_id, client_secret, steps, mode):
    import httpx2
    from mcp import Client
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError

    provider = ClientCredentialsOAuthProvider(
        server_url=url, storage=Memory(), client_id=client_id, client_secret=client_secret, issuer=issuer
    )
    http = httpx2.AsyncClient(auth=provider, timeout=30)
    try:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as session:
            emit({"connected": {"protocol": session.session.protocol_version}})
            for index, step in enumerate(steps):
                try:
                    if step["op"] == "list_tools":
                        listed = await session.list_tools()
                        out = {"tools": [t.name for t in listed.tools]}
                    elif step["op"] == "call":
                        result = await session.call_tool(step["tool"], step.get("args", {}))
                        out = {"result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
                    else:
                        raise SystemExit(f"unknown step {step['op']}")
                except MCPError as e:
                    out = {"error": {"code": e.code, "message": e.message, "data": e.data}}
                emit({"step": index, **out})
    except Exception as e:  # noqa: BLE001 - the test wants to see any failure
        emit({"connect_error": repr(e)})
    finally:
        await http.aclose()


def main():
    role, args = sys.argv[1], sys.argv[2:]
    if role == "as":
        authorization_server(*args)
    elif role == "client":
        url, issuer, client_id, client_secret, steps = args[:5]
        mode = args[6] if len(args) > 6 and args[5] == "--mode" else "legacy"
        asyncio.run(client(url, issuer, client_id, client_secret, json.loads(steps), mode))
    else:
        raise SystemExit(f"unknown role {role}")


main()
