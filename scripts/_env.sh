# shellcheck shell=bash
# Sourced by scripts/test, scripts/demo and .ci/run: makes sure the repo's .venv
# exists and holds this package installed editable with its test extras, and
# that the compiled runtime core (mypyc; see setup.py) matches its source.
# Reinstalls only when pyproject.toml or setup.py changed since the last install;
# rebuilds the core only when one of its compiled modules changed.
# STORM_PURE_PYTHON=1 skips compiling (the core then runs from source).
# Set PYTHON to choose the interpreter (default: the first python3.11+ found).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

_find_python() {
    local py
    for py in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$py" ] || continue
        command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    echo "error: no Python 3.11 or newer found; install python3.11 or set PYTHON=/path/to/python" >&2
    return 1
}

_make_venv() {
    local py="$1"
    if "$py" -m venv "$VENV" 2>/dev/null; then
        return 0
    fi
    rm -rf "$VENV"
    # Debian ships venv's pip bootstrap separately (python3.X-venv); install it when we can.
    local pkg
    pkg="python$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')-venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "python -m venv failed; installing $pkg with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
        "$py" -m venv "$VENV" && return 0
    fi
    echo "error: '$py -m venv' failed; on Debian install $pkg (apt-get install $pkg)" >&2
    return 1
}

ensure_venv() {
    local py stamp want
    if [ ! -x "$VENV/bin/python" ]; then
        py="$(_find_python)"
        echo "creating $VENV with $py ($("$py" --version 2>&1))" >&2
        _make_venv "$py"
    fi
    stamp="$VENV/.storm-install-stamp"
    want="$(cat "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/setup.py" | sha256sum | cut -d' ' -f1) $REPO_ROOT"
    if [ ! -x "$VENV/bin/storm" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "installing storm-streams (editable, with test extras) into $VENV" >&2
        # The core is compiled in place below, with the venv's own mypy.
        STORM_PURE_PYTHON=1 "$VENV/bin/python" -m pip install -qq -e "$REPO_ROOT[test]" >&2
        echo "$want" >"$stamp"
    fi
    ensure_core_build
}

# The compiled modules' source, hashed: the build is redone when it changes.
_core_sources_hash() {
    (cd "$REPO_ROOT" && "$VENV/bin/python" -c 'import re,sys; print(" ".join(re.findall(r"\"(storm/[^\"]+\.py)\"", open("setup.py").read())))' \
        | xargs cat setup.py | sha256sum | cut -d' ' -f1)
}

ensure_core_build() {
    local stamp want
    if [ -n "${STORM_PURE_PYTHON:-}" ] && [ "${STORM_PURE_PYTHON}" != 0 ]; then
        return 0
    fi
    if ! command -v "$("$VENV/bin/python" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "cc").split()[0])')" >/dev/null 2>&1; then
        echo "no C compiler: the runtime core runs as pure Python" >&2
        return 0
    fi
    stamp="$VENV/.storm-core-stamp"
    want="$(_core_sources_hash)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! ls "$REPO_ROOT"/storm/_runtime/worker.*.so >/dev/null 2>&1; then
        echo "compiling the runtime core with mypyc (setup.py build_ext --inplace)" >&2
        (cd "$REPO_ROOT" && "$VENV/bin/python" setup.py -q build_ext --inplace >/dev/null) || {
            echo "error: compiling the runtime core failed; STORM_PURE_PYTHON=1 runs it from source" >&2
            return 1
        }
        echo "$want" >"$stamp"
    fi
}
