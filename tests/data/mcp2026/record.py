"""Records an MCP session as `portcullis replay` reads it: one line per JSON-RPC message,
requests with the HTTP headers the client sent (`{"headers": {...}, "message": {...}}`),
answers as bare messages. Used once to make session-2026.jsonl beside it:

    target/mcp-venv/bin/python tests/data/mcp2026/record.py http://127.0.0.1:PORT/mcp OUT.jsonl

with the Python `mcp` 2.3.0 client (2026-07-28 pinned) talking to tests/mcp_sdk/py_server.py
through `portcullis serve`'s MCP door (tool-guard). Credentials (`authorization`,
`x-api-key`) and transport headers (`content-length`, `host`, ...) are not recorded.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

SKIPPED = {"authorization", "x-api-key", "content-length", "host", "connection", "accept-encoding", "user-agent"}


class Recorder(httpx2.AsyncBaseTransport):
    def __init__(self, out):
        self.inner, self.out = httpx2.AsyncHTTPTransport(), out

    def write(self, line):
        self.out.write(json.dumps(line, separators=(",", ":")) + "\n")

    async def handle_async_request(self, request):
        body = request.content
        if body:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in SKIPPED}
            self.write({"headers": headers, "message": json.loads(body)})
        response = await self.inner.handle_async_request(request)
        data = await response.aread()
        text = data.decode("utf-8")
        for chunk in text.splitlines() if "event-stream" in response.headers.get("content-type", "") else [text]:
            chunk = chunk.removeprefix("data:").strip() if "event-stream" in response.headers.get("content-type", "") else chunk
            if chunk.startswith("{"):
                self.write(json.loads(chunk))
        return httpx2.Response(response.status_code, headers=response.headers, content=data, request=request)


async def main(url, path, key):
    with open(path, "w", encoding="utf-8") as out:
        out.write(f"# recorded by tests/data/mcp2026/record.py: Python mcp 2.3.0 client, 2026-07-28, through the door\n")
        http = httpx2.AsyncClient(transport=Recorder(out), headers={"x-api-key": key}, timeout=30)
        async with Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as client:
            await client.list_tools()
            await client.call_tool("get_invoice", {"invoice_id": 7})
            await client.call_tool("invoices_in_region", {"region": "us-west1", "status": "open"})
            try:
                await client.call_tool("delete_invoice", {"invoice_id": 7})
            except Exception as e:  # noqa: BLE001 - held for approval: the error is recorded
                print(f"delete_invoice: {e}", file=sys.stderr)
        await http.aclose()


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
