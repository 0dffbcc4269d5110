#!/usr/bin/env python3
"""Builds a Python policy into a Portcullis component with componentize-py, and generates
the bindings for native use (unit tests, editors).

    python3 guest-sdk/python/portcullis_build.py build policies/python/agent-guard out.wasm
    python3 guest-sdk/python/portcullis_build.py bindings [DIR]   # default target/python-bindings

`scripts/build-python-policies.sh` installs componentize-py and calls `build` for every
policy; this file holds the steps themselves, so that other tools can reuse them.

What `build` does, and why:

1. Reads the policy's `pyproject.toml`: `[project] name`, and under `[tool.portcullis]` the
   `module` to build (default: the name with `-` turned into `_`) and the `capabilities` it
   calls (`log`, `clock`, `rate-limit`, `data`; default none).
2. Writes a WIT world that imports `settings` plus exactly those capabilities and exports
   `handler`, all from `wit/` (`portcullis:policy`). componentize-py imports every interface
   of the world it builds for, whether the code calls it or not, so building against the
   full `policy` world would make every Python policy import all four capabilities, and
   the host would refuse to load it unless all four were granted.
3. Stages the policy's modules (without its tests) and the `portcullis_guest` package in
   one folder: componentize-py bundles the folders on its Python path into the component.
4. Runs `componentize-py ... componentize --stub-wasi`: CPython inside the component
   otherwise imports 25 WASI interfaces (filesystem, sockets, ...), which the host never
   provides. The stubs trap if called; the policy's code and the SDK are imported at build
   time (componentize-py pre-initialises the component), so they never need them.
5. Writes the component next to OUT and renames it into place, so nothing ever loads a
   half-written file.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

SDK_DIR = Path(__file__).resolve().parent
REPO = SDK_DIR.parent.parent
WIT_DIR = REPO / "wit"
CAPABILITIES = ("log", "clock", "rate-limit", "data")
WORLD = "python-policy"


class BuildError(Exception):
    """A problem with the policy project or the toolchain, said in one sentence."""


def contract_version(wit_dir: Path = WIT_DIR) -> str:
    """The version of `portcullis:policy` in `wit_dir`."""
    for path in sorted(wit_dir.glob("*.wit")):
        match = re.search(r"^\s*package\s+portcullis:policy@([0-9A-Za-z.+-]+)\s*;", path.read_text(), re.M)
        if match:
            return match.group(1)
    raise BuildError(f"no `package portcullis:policy@VERSION;` in {wit_dir}/*.wit")


def read_pyproject(policy_dir: Path) -> dict:
    """`name`, `module` and `capabilities` from the policy's pyproject.toml."""
    path = policy_dir / "pyproject.toml"
    if not path.is_file():
        raise BuildError(f"{path} is missing: a Python policy needs a pyproject.toml with [project] name")
    text = path.read_text()
    try:
        import tomllib  # Python 3.11+

        doc = tomllib.loads(text)
    except ModuleNotFoundError:  # pragma: no cover: older Pythons
        doc = _mini_toml(text)
    except Exception as error:  # tomllib.TOMLDecodeError
        raise BuildError(f"{path}: {error}") from None
    name = doc.get("project", {}).get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise BuildError(f"{path}: [project] name must be a lower-case name such as my-policy, not {name!r}")
    tool = doc.get("tool", {}).get("portcullis", {})
    module = tool.get("module", name.replace("-", "_"))
    if not isinstance(module, str) or not module.isidentifier():
        raise BuildError(f"{path}: [tool.portcullis] module must be a Python module name, not {module!r}")
    if module in ("wit_world", "componentize_py_types", "componentize_py_runtime", "portcullis_guest"):
        raise BuildError(f"{path}: [tool.portcullis] module must not be called {module} (a name the build uses)")
    if not (policy_dir / f"{module}.py").is_file() and not (policy_dir / module / "__init__.py").is_file():
        raise BuildError(f"{path}: module `{module}` not found ({module}.py or {module}/__init__.py)")
    capabilities = tool.get("capabilities", [])
    if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
        raise BuildError(f"{path}: [tool.portcullis] capabilities must be a list of names")
    for capability in capabilities:
        if capability not in CAPABILITIES:
            raise BuildError(
                f"{path}: unknown capability {capability!r} in [tool.portcullis] capabilities "
                f"(known: {', '.join(CAPABILITIES)})"
            )
    return {"name": name, "module": module, "capabilities": list(dict.fromkeys(capabilities))}


def _mini_toml(text: str) -> dict:
    """Just enough TOML for a pyproject.toml's `name`, `module` and `capabilities`, for
    Pythons without tomllib."""
    doc: dict = {}
    table = doc
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        header = re.fullmatch(r"\[([A-Za-z0-9_.-]+)\]", line)
        if header:
            table = doc
            for part in header.group(1).split("."):
                table = table.setdefault(part, {})
            continue
        pair = re.fullmatch(r"([A-Za-z0-9_-]+)\s*=\s*(.+)", line)
        if pair:
            key, value = pair.groups()
            if value.startswith("["):
                table[key] = re.findall(r'"([^"]*)"', value)
            elif value.startswith('"'):
                table[key] = value.strip('"')
    return doc


def world_wit(capabilities: List[str], version: str) -> str:
    """A world with `settings`, these capabilities and the `handler` export."""
    lines = [
        "// Generated by guest-sdk/python/portcullis_build.py: the imports of one Python policy.",
        "package portcullis:python-build;",
        "",
        f"world {WORLD} {{",
        f"    import portcullis:policy/settings@{version};",
    ]
    lines += [f"    import portcullis:policy/{c}@{version};" for c in capabilities]
    lines += [f"    export portcullis:policy/handler@{version};", "}", ""]
    return "\n".join(lines)


def write_wit(out: Path, capabilities: List[str]) -> None:
    """The world above in `out/`, with the contract from `wit/` as its dependency."""
    deps = out / "deps" / "portcullis-policy"
    deps.mkdir(parents=True)
    for path in WIT_DIR.glob("*.wit"):
        shutil.copy(path, deps / path.name)
    (out / "world.wit").write_text(world_wit(capabilities, contract_version()))


def _ignore_tests(directory: str, names: List[str]) -> List[str]:
    return [
        n
        for n in names
        if n in ("__pycache__", "tests", "pyproject.toml", ".pytest_cache")
        or n.startswith("test_")
        or n.endswith("_test.py")
        or n.endswith(".pyc")
    ]


def stage(policy_dir: Path, out: Path) -> None:
    """The policy's files (without tests) and the SDK in one folder."""
    shutil.copytree(policy_dir, out, ignore=_ignore_tests)
    shutil.copytree(SDK_DIR / "portcullis_guest", out / "portcullis_guest", ignore=_ignore_tests)


def find_componentize_py(given: Optional[str]) -> str:
    """The componentize-py command: as given, beside this Python, or on PATH."""
    if given:
        # An absolute path when it names a file: the build runs it from another folder.
        return str(Path(given).resolve()) if os.sep in given else given
    beside = Path(sys.executable).parent / "componentize-py"
    if beside.is_file():
        return str(beside)
    found = shutil.which("componentize-py")
    if found:
        return found
    raise BuildError(
        "componentize-py is not installed: `pip install componentize-py` "
        "(scripts/build-python-policies.sh installs it into target/python-venv)"
    )


def build(policy_dir: Path, output: Path, componentize_py: Optional[str] = None, quiet: bool = True) -> dict:
    """Builds the policy in `policy_dir` to the component `output`; returns its project
    facts (`name`, `module`, `capabilities`)."""
    policy_dir, output = policy_dir.resolve(), output.resolve()
    project = read_pyproject(policy_dir)
    tool = find_componentize_py(componentize_py)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"portcullis-py-{project['name']}-") as tmp:
        wit = Path(tmp) / "wit"
        app = Path(tmp) / "app"
        write_wit(wit, project["capabilities"])
        stage(policy_dir, app)
        partial = output.parent / f".{output.name}.{os.getpid()}"
        command = [tool, "-d", str(wit), "-w", WORLD]
        if quiet:
            command.append("-q")
        command += ["componentize", "--stub-wasi", "-p", str(app), project["module"], "-o", str(partial)]
        # Only the staged folder goes into the component: no virtualenv's site-packages.
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        result = subprocess.run(command, env=env, cwd=tmp)
        if result.returncode != 0 or not partial.is_file():
            partial.unlink(missing_ok=True)
            raise BuildError(f"componentize-py failed for {policy_dir} (exit {result.returncode})")
        os.replace(partial, output)
    return project


def bindings(out: Path, componentize_py: Optional[str] = None) -> None:
    """The bindings of the full `policy` world in `out` (replaced), for native imports of
    `wit_world`."""
    tool = find_componentize_py(componentize_py)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    result = subprocess.run([tool, "-q", "-d", str(WIT_DIR), "-w", "policy", "bindings", str(partial)])
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise BuildError(f"componentize-py could not generate bindings (exit {result.returncode})")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(partial, out)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--componentize-py", help="the componentize-py command (default: beside this Python, or on PATH)")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="build a policy folder to a component")
    b.add_argument("policy_dir", type=Path)
    b.add_argument("output", type=Path)
    b.add_argument("--verbose", action="store_true", help="show componentize-py's output")
    g = commands.add_parser("bindings", help="generate the bindings for native use")
    g.add_argument("out", type=Path, nargs="?", default=REPO / "target" / "python-bindings")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.policy_dir, args.output, args.componentize_py, quiet=not args.verbose)
        else:
            bindings(args.out, args.componentize_py)
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
