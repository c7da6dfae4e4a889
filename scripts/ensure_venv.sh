# Sourced by run_tests.sh / run_demo.sh: create ./.venv once and install this package into it.
# Re-installs only when setup.py changed since the last install (stamp file).
VENV="${LIGHTMEDSEG_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
STAMP="$VENV/.lightmedseg_installed"
if [ ! -f "$STAMP" ] || [ setup.py -nt "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install --quiet -e '.[test]'
  touch "$STAMP"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
