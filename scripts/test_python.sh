#!/usr/bin/env bash
# Builds the Python package kvcompress into a virtual environment (build-python/venv, reused on
# later runs), then runs its tests: scripts/test_python.sh [pytest arguments].
# The build dependencies named in pyproject.toml are installed into the venv first and the
# package is built without isolation in build-python/<wheel tag>, so rebuilds are incremental.
# Needs python3 with venv, and the C++ build's Debian packages (scripts/setup.sh).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/build-python/venv"
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
py="$venv/bin/python"

mapfile -t build_requires < <("$py" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
PY
)
"$py" -m pip install -q "${build_requires[@]}" pytest
# A build folder that outlives pip (a plain `pip install .` builds in a temporary one).
"$py" -m pip install -q --no-build-isolation --config-settings=build-dir=build-python/{wheel_tag} "$root"
cd "$root"
"$py" -m pytest -q python/tests "$@"
