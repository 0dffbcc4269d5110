"""A real MCP server for tests/mcp.rs: the official Python SDK's MCPServer (formerly
FastMCP) over Streamable HTTP on loopback.

    python server.py PORT_FILE SEEN.jsonl [--json]

It listens on a port the system picks (port 0) and, once listening, writes that port to
PORT_FILE (aside, then renamed), so parallel tests never race for a port.

Every tool call appends {"tool": NAME, "arguments": {...}} to SEEN.jsonl, so a test can
prove what reached the server (e.g. that a redacted argument never did). `--json` answers
POSTs with application/json instead of an SSE stream.
"""

import json
import os
import socket
import sys

import uvicorn

from mcp.server import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel

port_file = sys.argv[1]
seen_path = sys.argv[2]
json_response = "--json" in sys.argv[3:]

server = MCPServer("portcullis-test-crm")


def seen(tool: str, arguments: dict) -> None:
    with open(seen_path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": tool, "arguments": arguments}) + "\n")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def search_customers(query: str, ssn: str = "") -> str:
    """Search customers by name."""
    seen("search_customers", {"query": query, "ssn": ssn})
    return f"found 1 customer for {query}"


class Customer(BaseModel):
    id: int
    name: str
    email: str
    phone: str


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_customer(customer_id: int) -> Customer:
    """A customer record, with personal data (structured content and its text mirror)."""
    seen("get_customer", {"customer_id": customer_id})
    return Customer(id=customer_id, name="Ada", email="ada@example.com", phone="+44 20 7946 0000")


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def create_invoice(customer_id: int, amount: float) -> dict:
    """Create an invoice (a write)."""
    seen("create_invoice", {"customer_id": customer_id, "amount": amount})
    return {"invoice": "inv-1001", "customer_id": customer_id, "amount": amount}


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
def delete_customer(customer_id: int) -> str:
    """Delete a customer (destructive)."""
    seen("delete_customer", {"customer_id": customer_id})
    return f"deleted {customer_id}"


@server.resource("crm://customers/{customer_id}")
def customer_resource(customer_id: str) -> str:
    """A customer as a resource."""
    return json.dumps({"id": customer_id, "email": "ada@example.com"})


@server.prompt()
def summarise(customer_id: str) -> str:
    """A prompt."""
    return f"Summarise customer {customer_id}."


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind(("127.0.0.1", 0))
listener.listen(128)
with open(port_file + ".new", "w", encoding="utf-8") as f:
    f.write(f"{listener.getsockname()[1]}\n")
os.replace(port_file + ".new", port_file)

# What `server.run("streamable-http", ...)` does, on the socket already bound.
app = server.streamable_http_app(streamable_http_path="/mcp", json_response=json_response, host="127.0.0.1")
uvicorn.Server(uvicorn.Config(app, log_level=server.settings.log_level.lower())).run(sockets=[listener])
