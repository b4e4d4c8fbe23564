#!/usr/bin/env bash
# Every check and every test, end-to-end ones included: installs what they need from this
# repository's own files (.venv from uv.lock: the tap, the bundled target, the simulator and the
# dev and bench groups; .venv-meltano with Meltano), runs ruff and mypy, then pytest.
# Arguments go to pytest, e.g. `bash scripts/test.sh -m "not e2e"`.
# The end-to-end tests need PostgreSQL on 127.0.0.1:5432 (or Debian's postgresql binaries, to start
# a throwaway one); without it they are skipped, except with CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# The interpreter's own path: uv would otherwise pick any Python it finds (or download one).
PYTHON=$(command -v "$PYTHON") || { echo "test.sh: $PYTHON not found (set PYTHON)" >&2; exit 1; }

# Meltano pins its own dependencies, uv among them (from PyPI), so it gets its own virtualenv.
[ -x .venv-meltano/bin/python ] || "$PYTHON" -m venv .venv-meltano
.venv-meltano/bin/python -m pip install --quiet --disable-pip-version-check uv
.venv-meltano/bin/uv pip install --quiet --compile-bytecode --python .venv-meltano/bin/python \
    -r requirements/meltano.txt
uv=.venv-meltano/bin/uv

# The project exactly as uv.lock has it (--locked: fail if pyproject.toml and the lock disagree).
# Bytecode compiled as pip would: with PYTHONDONTWRITEBYTECODE set (as on CI machines) every tap
# and target process the tests start would otherwise compile the SDK.
UV_COMPILE_BYTECODE=1 "$uv" sync --quiet --locked --all-groups --python "$PYTHON"

echo "==> ruff check ."
.venv/bin/ruff check .
echo "==> mypy (strict: tap_qualys, target_qualys_sqlite, qualys_simulator)"
.venv/bin/mypy

export MELTANO_BIN="$PWD/.venv-meltano/bin/meltano"
exec .venv/bin/python -m pytest "$@"
