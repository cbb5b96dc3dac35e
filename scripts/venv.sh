# Sourced by run.sh and test.sh: make .venv with Python 3.11 and the pinned
# dependencies of pyproject.toml, reinstalling only when pyproject.toml changed.
# Prints what it does; needs nothing but Python 3.11 (and root to apt-get venv
# support on a Debian machine that lacks it).

enclave_python() {
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            echo "$candidate"
            return 0
        fi
    done
    echo "Enclave needs Python 3.11 (python3.11 or python3 on PATH)" >&2
    return 1
}

enclave_venv() {
    local python stamp want
    python=$(enclave_python)
    # Two terminals starting at once on a fresh clone must not install into .venv together.
    if command -v flock >/dev/null 2>&1; then
        exec 9>.venv.lock
        flock 9
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv with $python"
        if ! "$python" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "== installing python3-venv"
                apt-get update -qq && apt-get install -y -qq python3-venv python3.11-venv >/dev/null || true
            fi
            "$python" -m venv .venv
        fi
    fi
    # $1: the extras to install ("" for the app alone, "test,bench" for the suite)
    stamp=".venv/.enclave-installed-${1:-app}"
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "== installing Enclave and its pinned dependencies${1:+ ($1)}"
        .venv/bin/python -m pip install --quiet --upgrade pip
        .venv/bin/python -m pip install --quiet -e ".${1:+[$1]}"
        echo "$want" >"$stamp"
    fi
    if command -v flock >/dev/null 2>&1; then
        flock -u 9
        exec 9>&-
    fi
}
