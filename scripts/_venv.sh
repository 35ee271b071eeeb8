# Shared by scripts/run and scripts/test: create .venv if missing and install the project.
# Usage: . scripts/_venv.sh EXTRAS   (comma-separated extras, e.g. "test,embedded")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-}"
python="${PYTHON:-python3}"
# One creator at a time: scripts/run and scripts/test started together on a fresh
# checkout would otherwise both create and install into the same .venv.
exec {venv_lock}>"$root/.venv.lock"
flock "$venv_lock"
if [ ! -x .venv/bin/python ]; then
    echo "dagq: creating .venv" >&2
    "$python" -m venv .venv
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
# A strict editable install: `dagq` is a tree of links (under build/) to app/, workers/
# and sql/, found through a plain path in a .pth file, so editors and type checkers
# (Pyright, Pylance, mypy) resolve `dagq.*` too. A new or removed file needs a new
# tree, so reinstall when the metadata or the list of package files changed.
stamp=".venv/.dagq-installed-$extras"
files="$( { git ls-files --cached --others --exclude-standard app workers sql 2>/dev/null \
    || find app workers sql -type f; } \
    | sort | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$(cat "$stamp")" != "$files" ]; then
    echo "dagq: installing $spec into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" \
        --config-settings editable_mode=strict
    echo "$files" > "$stamp"
fi
flock -u "$venv_lock"
exec {venv_lock}>&-
