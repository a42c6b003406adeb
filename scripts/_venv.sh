# Shared by scripts/serve and scripts/test (sourced, not run): make ./.venv and install the project
# into it, but only when needed.
#
# An install leaves a stamp file in .venv naming the extras it installed. The install is skipped
# while a stamp covering the requested extras is newer than pyproject.toml; deleting .venv (or
# editing pyproject.toml) makes the next run install again. Set PYTHON to choose the interpreter.

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3 python; do
        [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 or newer is required; install it or set PYTHON=/path/to/python3.11" >&2
    return 1
}

# ensure_venv EXTRAS: e.g. ensure_venv postgres,redis
ensure_venv() {
    local extras=$1 python stamp wanted covered
    if [ ! -x .venv/bin/python ]; then
        python=$(find_python) || return 1
        echo "==> creating .venv with $python ($("$python" --version 2>&1))" >&2
        "$python" -m venv .venv || {
            echo "error: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
            return 1
        }
    fi
    for stamp in .venv/.installed-*; do
        [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] || continue
        covered=1
        for wanted in ${extras//,/ }; do
            case ",${stamp#.venv/.installed-}," in *",$wanted,"*) ;; *) covered=0 ;; esac
        done
        [ "$covered" = 1 ] && return 0
    done
    echo "==> installing the project into .venv: pip install -e .[$extras]" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2 || return 1
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]" >&2 || return 1
    rm -f .venv/.installed-*
    touch ".venv/.installed-$extras"
}
