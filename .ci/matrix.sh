#!/usr/bin/env bash
# The support range's two ends, on SQLite: the oldest pair (Python 3.10 + Django 4.2)
# and the newest (Python 3.13 + Django 6.1.x). The everyday suite (.ci/run) tests the
# project venv's Python 3.11 + Django 5.2; tox.ini has the full matrix.
#
#   bash .ci/matrix.sh                 both pairs, side by side (two jobs)
#   bash .ci/matrix.sh py313-django61  one pair
#   MATRIX_JOBS=1 bash .ci/matrix.sh   one pair after the other
#   MATRIX_KEEP=1 bash .ci/matrix.sh   keep the venvs in .venv-matrix-<pair>/ and reuse them
#                                      while pyproject.toml and this script are unchanged
#
# Each pair gets a fresh venv (in a temporary directory, on /dev/shm when it has room,
# unless MATRIX_KEEP=1) with the project installed editable with its "oidc" extra, the
# test dependencies of tox.ini and Django pinned to the pair's series; pip's cache makes
# the reinstall quick. Pythons come from pyenv when it is
# there (PYENV_VERSION), else from PATH; MATRIX_PYTHON_<pair> (e.g. MATRIX_PYTHON_py310_django42)
# names an interpreter explicitly. Prints each pair's versions and result; exits non-zero
# if either fails (or its Python is missing).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

# name  python  django requirement
PAIRS=(
    "py310-django42 3.10 Django>=4.2,<5.0"
    "py313-django61 3.13 Django>=6.1,<6.2"
)
# As tox.ini's [testenv] deps (not the "dev" extra: django-stubs and mypy may pull another Django).
TEST_DEPS=("pytest>=8" "pytest-django>=4.8" "factory-boy>=3.3" "django-environ>=0.11" "requests>=2.31" "hypothesis>=6.100")
PYTEST_ARGS=(-q -p no:cacheprovider)

say() { printf 'matrix: %s\n' "$*"; }

# The interpreter for Python X.Y: an explicit one, pyenv's newest X.Y.*, or pythonX.Y on PATH.
find_python() {
    local pair=$1 minor=$2 var override root version
    var="MATRIX_PYTHON_${pair//-/_}"
    override=${!var:-}
    if [[ -n $override ]]; then
        echo "$override"
        return
    fi
    if command -v pyenv >/dev/null 2>&1; then
        root=$(pyenv root)
        version=$(cd "$root/versions" 2>/dev/null && ls -d "$minor".* 2>/dev/null | sort -V | tail -n 1)
        if [[ -n $version && -x $root/versions/$version/bin/python$minor ]]; then
            echo "$root/versions/$version/bin/python$minor"
            return
        fi
    fi
    command -v "python$minor" 2>/dev/null
}

# One pair, from venv to test result; its output goes to $log, its exit code is the result.
run_pair() {
    local pair=$1 minor=$2 django=$3 log=$4 python venv_dir stamp digest start status
    start=$SECONDS
    {
        python=$(find_python "$pair" "$minor") || true
        if [[ -z $python ]]; then
            say "$pair: no Python $minor found (pyenv, PATH or MATRIX_PYTHON_${pair//-/_})"
            return 3
        fi
        if [[ -n ${MATRIX_KEEP:-} ]]; then
            venv_dir="$ROOT/.venv-matrix-$pair"
        else
            venv_dir="$WORK/$pair"
        fi
        stamp="$venv_dir/.matrix-install"
        digest=$(cat pyproject.toml "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
        if [[ -f $stamp && $(cat "$stamp") == "$digest" && -x $venv_dir/bin/python ]]; then
            say "$pair: reusing $venv_dir"
        else
            rm -rf "$venv_dir"
            "$python" -m venv "$venv_dir" || return 4
            # The project editable (its runtime dependencies from pyproject.toml) and the test
            # dependencies, with Django held to the pair's series. mozilla-django-oidc declares
            # no upper bound on Django, so the resolver needs no help; pip check below would
            # report a conflict if a release ever added one.
            "$venv_dir/bin/python" -m pip install --quiet --disable-pip-version-check \
                -e ".[oidc]" "$django" "${TEST_DEPS[@]}" >"$venv_dir/.pip.log" 2>&1
            status=$?
            # Not this machine's harmless "Location ... is ignored" notes.
            grep -v "is ignored: it is neither a file nor a directory" "$venv_dir/.pip.log"
            if [[ $status -ne 0 ]]; then
                say "$pair: pip install failed (exit $status)"
                return 4
            fi
            "$venv_dir/bin/python" -m pip check --disable-pip-version-check \
                || say "$pair: pip check reports the conflict above (tests run anyway)"
            echo "$digest" >"$stamp"
        fi
        "$venv_dir/bin/python" -c "import sys, django; print(f'matrix: $pair: Python {sys.version.split()[0]}, Django {django.get_version()}')"
        say "$pair: installed in $((SECONDS - start)) s; running the SQLite suite"
        # SQLite: a DATABASE_URL from the caller's environment would select another backend.
        env -u DATABASE_URL PYTHONDONTWRITEBYTECODE=1 "$venv_dir/bin/python" -m pytest "${PYTEST_ARGS[@]}"
    } >"$log" 2>&1
}

selected=()
for entry in "${PAIRS[@]}"; do
    read -r name _ _ <<<"$entry"
    if [[ $# -eq 0 ]] || [[ " $* " == *" $name "* ]]; then
        selected+=("$entry")
    fi
done
if [[ ${#selected[@]} -eq 0 ]]; then
    say "no pair named $*; the pairs are: $(printf '%s ' "${PAIRS[@]%% *}")"
    exit 2
fi

# Thousands of small files per venv: on tmpfs (/dev/shm) they are made and removed in a
# fraction of the time they take on disk.
tmp=${TMPDIR:-/tmp}
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]] \
    && [[ $(df -Pk /dev/shm | awk 'NR == 2 {print $4}') -gt 2000000 ]]; then
    tmp=/dev/shm
fi
WORK=$(mktemp -d "$tmp/ea-matrix.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
jobs_max=${MATRIX_JOBS:-2}
total_start=$SECONDS
declare -A pids=() began=() took=() codes=()

for entry in "${selected[@]}"; do
    read -r name minor django <<<"$entry"
    while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do
        wait -n
    done
    say "$name: Python $minor, $django"
    began[$name]=$SECONDS
    (
        run_pair "$name" "$minor" "$django" "$WORK/$name.log"
        status=$?
        echo $((SECONDS - ${began[$name]})) >"$WORK/$name.seconds"
        exit $status
    ) &
    pids[$name]=$!
done

failed=0
for entry in "${selected[@]}"; do
    read -r name _ _ <<<"$entry"
    wait "${pids[$name]}"
    codes[$name]=$?
    took[$name]=$(cat "$WORK/$name.seconds" 2>/dev/null || echo "?")
done

for entry in "${selected[@]}"; do
    read -r name minor django <<<"$entry"
    log="$WORK/$name.log"
    echo
    if [[ ${codes[$name]} -eq 0 ]]; then
        # Versions, timings and pytest's summary line.
        grep -E '^matrix: ' "$log"
        tail -n 1 "$log"
        say "$name: OK in ${took[$name]} s"
    else
        say "$name: FAILED (exit ${codes[$name]}) in ${took[$name]} s; its output:"
        cat "$log"
        failed=1
    fi
done
echo
if [[ $failed -ne 0 ]]; then
    say "FAILED after $((SECONDS - total_start)) s"
    exit 1
fi
say "all passed: ${selected[*]%% *} ($((SECONDS - total_start)) s)"
