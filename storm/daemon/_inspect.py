"""`python -m storm.daemon._inspect`: build a topology from unpacked code in a
process of its own and print what nimbus keeps of it, as one JSON line. Nimbus
runs user code only this way, so an import that hangs, exits or leaks state
cannot harm it. Input (JSON on stdin): code_dir, target, overrides, parallelism."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._errors import StormError
from ._code import build_spec, describe_spec, resolve_target

if TYPE_CHECKING:
    from .._topology import TopologySpec


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
