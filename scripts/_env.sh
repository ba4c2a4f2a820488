# Shared by scripts/dev and scripts/test: make .venv with smartq installed (idempotent, fast).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "smartq needs Python 3.11 or newer (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
stamp=".venv/.smartq-installed-$1"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "== installing smartq into .venv ($1)" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
  if [ "$1" = "dev" ]; then target='.[dev]'; else target='.'; fi
  # compat mode: a .pth with the project root, so new top-level packages need no reinstall
  .venv/bin/python -m uv pip install --quiet --python .venv/bin/python \
    --config-settings editable_mode=compat -e "$target"
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
