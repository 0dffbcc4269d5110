"""A real MCP client for tests/mcp.rs: the official Python SDK's `Client` over Streamable
HTTP, running a scripted session and printing what happened as JSON.

    python client.py URL STEPS_JSON [--header NAME:VALUE]... [--mode legacy|auto]

STEPS_JSON is a list of steps, run in order in one session:
  {"op": "list_tools"}                                  -> {"tools": [names], "annotations": {...}}
  {"op": "call", "tool": T, "args": {...}}              -> {"result": {...}} or {"error": {...}}
  {"op": "call", ..., "approval_from": N}               -> retries with the approval id from step N's
                                                           error, sent in _meta "portcullis/approval"
  {"op": "approve", "admin": URL, "token": T, "from": N} -> approves step N's approval (admin API)
  {"op": "read", "uri": U}                              -> {"result": {...}} or {"error": {...}}
  {"op": "prompt", "name": P, "args": {...}}            -> {"result": {...}} or {"error": {...}}
A failure to connect at all prints {"connect_error": "..."}.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def error_of(e: MCPError):
    return {"error": {"code": e.code, "message": e.message, "data": e.data}}


async def run(url, steps, headers, mode):
    out = []
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    try:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            for step in steps:
                op = step["op"]
                try:
                    if op == "list_tools":
                        listed = await client.list_tools()
                        out.append({
                            "tools": [t.name for t in listed.tools],
                            "annotations": {t.name: dump(t.annotations) for t in listed.tools if t.annotations},
                        })
                    elif op == "call":
                        meta = None
                        if "approval_from" in step:
                            approval = out[step["approval_from"]]["error"]["data"]["approval"]["id"]
                            meta = {"portcullis/approval": approval}
                        result = await client.call_tool(step["tool"], step.get("args", {}), meta=meta)
                        out.append({"result": dump(result)})
                    elif op == "approve":
                        approval = out[step["from"]]["error"]["data"]["approval"]["id"]
                        async with httpx2.AsyncClient() as admin:
                            answer = await admin.post(
                                f"{step['admin']}/approvals/{approval}/approve",
                                headers={"authorization": f"Bearer {step['token']}"},
                                json={"by": "fiona@example.com"},
                            )
                        out.append({"approved": approval, "status": answer.status_code})
                    elif op == "read":
                        out.append({"result": dump(await client.read_resource(step["uri"]))})
                    elif op == "prompt":
                        out.append({"result": dump(await client.get_prompt(step["name"], step.get("args", {})))})
                    else:
                        raise SystemExit(f"unknown step {op}")
                except MCPError as e:
                    out.append(error_of(e))
    except MCPError as e:
        out.append({"connect_error": f"{e.code}: {e.message}", **error_of(e)})
    except Exception as e:  # noqa: BLE001 - the test wants to see any failure
        out.append({"connect_error": repr(e)})
    finally:
        await http.aclose()
    return out


def main():
    url, steps = sys.argv[1], json.loads(sys.argv[2])
    headers, mode = {}, "legacy"
    args = sys.argv[3:]
    while args:
        flag = args.pop(0)
        if flag == "--header":
            name, value = args.pop(0).split(":", 1)
            headers[name.strip()] = value.strip()
        elif flag == "--mode":
            mode = args.pop(0)
        else:
            raise SystemExit(f"unknown flag {flag}")
    print(json.dumps(asyncio.run(run(url, steps, headers, mode))))


main()
