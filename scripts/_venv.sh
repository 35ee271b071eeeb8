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
# Reinstall only when the project metadata changed since the last install.
stamp=".venv/.dagq-installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "dagq: installing $spec into .venv" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
flock -u "$venv_lock"
exec {venv_lock}>&-
