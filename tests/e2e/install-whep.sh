#!/bin/sh
# Install an independent WHEP client library, whip-whep (medooze's whep.js, MIT, one ES
# module without dependencies), from npm into .cache/whep (ignored by git), for
# tests/e2e/test_whip.py. `make test` runs this before the suite enters its private
# network namespace, where npm could not reach the registry.
set -eu
version=1.2.0
cache="$(dirname "$0")/../../.cache/whep"
module="$cache/node_modules/whip-whep/whep.js"
[ -f "$module" ] && grep -q "\"version\": \"$version\"" "$cache/node_modules/whip-whep/package.json" \
    && exit 0
if ! command -v npm >/dev/null 2>&1; then
    echo "install-whep.sh: npm not found (apt-get install npm); the WHEP e2e test will skip" >&2
    exit 0
fi
mkdir -p "$cache"
cd "$cache"
npm install --no-audit --no-fund --silent "whip-whep@$version"
