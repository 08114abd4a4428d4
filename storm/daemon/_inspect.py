"""`python -m storm.daemon._inspect`: build a topology from unpacked code in a
process of its own and print what nimbus keeps of it, as one JSON line. Nimbus
runs user code only this way, so an import that hangs, exits or leaks state
cannot harm it. Input (JSON on stdin): code_dir, target, overrides, parallelism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import StormError
from ._code import build_spec, describe_spec, resolve_target

if TYPE_CHECKING:
    from .._topology import TopologySpec


def in_subprocess(module: str, code_dir: Path, target: str, overrides: Mapping[str, Any],
                  parallelism: Mapping[str, int], timeout: float, invalid: str) -> dict[str, Any]:
    """Run `python -m module` (a `run(...)` entry point) on unpacked code and
    return its JSON answer; StormError when it fails, hangs, or says the
    topology is bad (`invalid` heads that message)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(code_dir), *(p for p in sys.path if p)])
    req = {"code_dir": str(code_dir), "target": target, "overrides": dict(overrides),
           "parallelism": dict(parallelism)}
    try:
        proc = subprocess.run([sys.executable, "-m", module], input=json.dumps(req),
                              capture_output=True, text=True, timeout=timeout, cwd=str(code_dir), env=env)
    except subprocess.TimeoutExpired as exc:
        raise StormError(f"building the topology took longer than {timeout:g}s") from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StormError(f"building the topology failed (exit {proc.returncode}): {' / '.join(tail)}")
    out: dict[str, Any] = json.loads(lines[-1])
    if not out.get("ok"):
        raise StormError(f"{invalid}: {out.get('error')}")
    return out


def run(describe: Callable[[TopologySpec], dict[str, Any]]) -> int:
    """Read the request, build the topology and print ``describe(spec)`` (or the
    error) as one JSON line. Other read-only views of stored code reuse it."""
    req = json.loads(sys.stdin.read())
    code_dir = Path(req["code_dir"])
    sys.path.insert(0, str(code_dir))
    try:
        spec = build_spec(resolve_target(code_dir, req["target"]), req.get("overrides") or {},
                          req.get("parallelism") or {})
        out = {"ok": True, **describe(spec)}
    except StormError as exc:
        out = {"ok": False, "error": str(exc)}
    except Exception as exc:
        out = {"ok": False, "error": f"building the topology raised {type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()}
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


def main() -> int:
    return run(describe_spec)


if __name__ == "__main__":
    sys.exit(main())
