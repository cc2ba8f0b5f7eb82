#!/bin/sh
# Install the official WCS Web SDK (@flashphoner/websdk, MIT) from npm into
# .cache/websdk (ignored by git). `make test` runs this before the suite enters its
# private network namespace, where npm could not reach the registry.
set -eu
version=2.0.276
cache="$(dirname "$0")/../../.cache/websdk"
bundle="$cache/node_modules/@flashphoner/websdk/flashphoner-webrtc-only.js"
[ -f "$bundle" ] && exit 0
if ! command -v npm >/dev/null 2>&1; then
    echo "install-websdk.sh: npm not found (apt-get install npm); the e2e tests will skip" >&2
    exit 0
fi
mkdir -p "$cache"
cd "$cache"
npm install --no-audit --no-fund --silent "@flashphoner/websdk@$version"
