#!/usr/bin/env bash
# Proves the README's demo command works on a fresh clone: clones this repository (its committed
# HEAD) into a temporary directory and runs `bash scripts/demo.sh` there.
set -euo pipefail
cd "$(dirname "$0")/.."
demo_command=$(grep -m1 -o 'bash scripts/demo\.sh' README.md) || {
    echo "check_readme_commands: README.md no longer shows 'bash scripts/demo.sh'" >&2
    exit 1
}
clone=$(mktemp -d)
trap 'rm -rf "$clone"' EXIT
git clone --quiet . "$clone/tap-qualys"
cd "$clone/tap-qualys"
echo "==> $demo_command (in a fresh clone: $PWD)"
started=$(date +%s)
$demo_command
echo "==> demo on a fresh clone: $(( $(date +%s) - started ))s"
