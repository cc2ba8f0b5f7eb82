#!/bin/sh
# Build hookcast's wheel and install it as a user would: `pip install` of the wheel into a
# fresh venv outside the checkout. Runs before the suite enters its network namespace
# (pip needs PyPI); tests/test_wheel.py then serves from that venv.
#   sh tests/wheel/install.sh [PYTHON]     PYTHON builds the wheel (default .venv/bin/python)
set -eu
cd "$(dirname "$0")/../.."
python=${1:-.venv/bin/python}
venv=${HOOKCAST_WHEEL_VENV:-${TMPDIR:-/tmp}/hookcast-wheel-venv}
dist="$venv.dist"
rm -rf build "$dist" "$venv"
# build/ is removed before and after: setuptools never deletes stale files from it
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$dist" .
rm -rf build
base=$("$python" -c 'import sys; print(sys._base_executable)')
"$base" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$dist"/hookcast-*.whl
echo "tests/wheel/install.sh: $("$venv/bin/hookcast" --version) installed in $venv"
