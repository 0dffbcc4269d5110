"""A real MCP server for tests/mcp.rs: the official Python SDK's MCPServer (formerly
FastMCP) over Streamable HTTP on loopback.

    python server.py PORT SEEN.jsonl [--json]

Every tool call appends {"tool": NAME, "arguments": {...}} to SEEN.jsonl, so a test can
prove what reached the server (e.g. that a redacted argument never did). `--json` answers
POSTs with application/json instead of an SSE stream.
"""

import json
import sys

from mcp.server import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel

port = int(sys.argv[1])
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


server.run(
    "streamable-http",
    host="127.0.0.1",
    port=port,
    streamable_http_path="/mcp",
    json_response=json_response,
)
