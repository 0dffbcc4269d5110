"""An MCP client built with the official Python SDK (`mcp` 2.x, `Client` over Streamable
HTTP), for tests/mcp_sdks.rs: runs a scripted session and prints one JSON line per event.

    python py_client.py URL STEPS_JSON [--mode legacy|auto|2026-07-28]
                        [--header NAME:VALUE]... [--bearer TOKEN]

`--mode legacy` speaks the 2025 handshake (`initialize`, protocol 2025-11-25), `auto` probes
`server/discover` and falls back, `2026-07-28` pins the 2026 generation. `--bearer` sends
`Authorization: Bearer TOKEN` on every request. The steps are the same for every SDK client
in this folder (see README.md there):

  {"op": "list_tools"}                          -> {"tools": [names], "annotations": {...}, "schemas": {...}}
  {"op": "call", "tool": T, "args": {...}}      -> {"result": {...}} | {"error": {...}} | {"input_required": {...}}
      "approval_from": N   retry with the approval id from step N's error (_meta "portcullis/approval")
      "elicit": "accept" | "decline" | "cancel"   the answer to a URL elicitation (default accept)
      "wait_file": PATH    before answering, wait until PATH exists (its text, if any, is the answer)
      "retry": false       do not retry an InputRequiredResult: print it as the step's result
  {"op": "read", "uri": U} / {"op": "prompt", "name": P, "args": {...}}
  {"op": "approve", "admin": URL, "token": T, "from": N}   approves step N's approval (admin API)

Lines printed: {"connected": {"protocol": V}} once, then per step {"step": I, ...result...};
an elicitation the client is asked for prints {"step": I, "elicitation": {...params...}} first.
A failure to connect prints {"connect_error": "..."}.
"""

import asyncio
import json
import os
import sys

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def emit(line):
    print(json.dumps(line), flush=True)


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def error_of(e: MCPError):
    return {"error": {"code": e.code, "message": e.message, "data": e.data}}


class Steps:
    """The step being run, so the elicitation callback knows how to answer."""

    def __init__(self):
        self.index, self.step = -1, {}


async def wait_for(path):
    while not os.path.exists(path):
        await asyncio.sleep(0.05)
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def elicitation_callback(current: Steps):
    async def answer(_context, params):
        emit({"step": current.index, "elicitation": dump(params)})
        action = current.step.get("elicit", "accept")
        if "wait_file" in current.step:
            action = (await wait_for(current.step["wait_file"])) or action
        return types.ElicitResult(action=action)

    return answer


async def run(url, steps, headers, mode):
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    current = Steps()
    results = []
    try:
        client = Client(
            streamable_http_client(url, http_client=http),
            mode=mode,
            elicitation_callback=elicitation_callback(current),
        )
        async with client:
            emit({"connected": {"protocol": client.session.protocol_version}})
            for index, step in enumerate(steps):
                current.index, current.step = index, step
                out = await run_step(client, step, results)
                results.append(out)
                emit({"step": index, **out})
    except MCPError as e:
        emit({"connect_error": f"{e.code}: {e.message}", **error_of(e)})
    except Exception as e:  # noqa: BLE001 - the test wants to see any failure
        emit({"connect_error": repr(e)})
    finally:
        await http.aclose()


async def run_step(client, step, results):
    op = step["op"]
    try:
        if op == "list_tools":
            listed = await client.list_tools()
            return {
                "tools": [t.name for t in listed.tools],
                "annotations": {t.name: dump(t.annotations) for t in listed.tools if t.annotations},
                "schemas": {t.name: t.input_schema for t in listed.tools},
            }
        if op == "call":
            meta = None
            if "approval_from" in step:
                meta = {"portcullis/approval": results[step["approval_from"]]["error"]["data"]["approval"]["id"]}
            if step.get("retry", True) is False:
                result = await client.session.call_tool(
                    step["tool"], step.get("args", {}), meta=meta, allow_input_required=True
                )
                if isinstance(result, types.InputRequiredResult):
                    return {"input_required": dump(result)}
                return {"result": dump(result)}
            return {"result": dump(await client.call_tool(step["tool"], step.get("args", {}), meta=meta))}
        if op == "listen":
            return await listen(client, step)
        if op == "read":
            return {"result": dump(await client.read_resource(step["uri"]))}
        if op == "prompt":
            return {"result": dump(await client.get_prompt(step["name"], step.get("args", {})))}
        if op == "approve":
            approval = results[step["from"]]["error"]["data"]["approval"]["id"]
            async with httpx2.AsyncClient() as admin:
                answer = await admin.post(
                    f"{step['admin']}/approvals/{approval}/approve",
                    headers={"authorization": f"Bearer {step['token']}"},
                    json={"by": "fiona@example.com"},
                )
            return {"approved": approval, "status": answer.status_code}
        raise SystemExit(f"unknown step {op}")
    except MCPError as e:
        return error_of(e)


async def listen(client, step):
    """A `subscriptions/listen` stream with `filter`; once acknowledged, the `trigger` call runs,
    and the change events that arrive within `wait_s` seconds are collected."""
    wanted = step.get("filter", {})
    events = []
    async with client.listen(
        tools_list_changed=wanted.get("toolsListChanged", False),
        prompts_list_changed=wanted.get("promptsListChanged", False),
        resources_list_changed=wanted.get("resourcesListChanged", False),
        resource_subscriptions=wanted.get("resourceSubscriptions", ()),
    ) as subscription:
        honored = dump(subscription.honored)
        trigger = step.get("trigger")
        if trigger:
            await client.call_tool(trigger["tool"], trigger.get("args", {}))

        async def collect():
            async for event in subscription:
                events.append({"type": type(event).__name__, **vars(event)})

        try:
            await asyncio.wait_for(collect(), step.get("wait_s", 2))
        except asyncio.TimeoutError:
            pass
    return {"honored": honored, "events": events}


def main():
    url, steps = sys.argv[1], json.loads(sys.argv[2])
    headers, mode = {}, "legacy"
    args = sys.argv[3:]
    while args:
        flag = args.pop(0)
        if flag == "--header":
            name, value = args.pop(0).split(":", 1)
            headers[name.strip()] = value.strip()
        elif flag == "--bearer":
            headers["Authorization"] = f"Bearer {args.pop(0)}"
        elif flag == "--mode":
            mode = args.pop(0)
        else:
            raise SystemExit(f"unknown flag {flag}")
    asyncio.run(run(url, steps, headers, mode))


main()
