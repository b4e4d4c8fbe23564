#!/usr/bin/env bash
# Every test, end-to-end ones included: installs what they need from this repository's own files
# (.venv with the project and its dev extras, .venv-meltano with Meltano), then runs pytest.
# Arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
# The end-to-end tests need PostgreSQL on 127.0.0.1:5432 (or Debian's postgresql binaries, to start
# a throwaway one); without it they are skipped, except with CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# uv (from PyPI) installs the same requirements as pip, in a fraction of the time.
install() {  # install VENV ARGS...: create the virtualenv if needed, then install ARGS into it
    local venv=$1
    shift
    [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check uv
    # --compile-bytecode writes the .pyc files pip would: with PYTHONDONTWRITEBYTECODE set (as on
    # CI machines) every tap and target process the tests start would otherwise compile the SDK.
    "$venv/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" "$@"
}
install .venv -e '.[dev]'
install .venv-meltano -r requirements/meltano.txt

export MELTANO_BIN="$PWD/.venv-meltano/bin/meltano"
exec .venv/bin/python -m pytest "$@"
