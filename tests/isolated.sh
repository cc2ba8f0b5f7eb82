#!/bin/sh
# Run a command inside a private network namespace whose only interface is
# loopback, so tests cannot send traffic anywhere but 127.0.0.1.
# Falls back to running it directly (with a message) where namespaces are not allowed.
if command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 \
        && unshare -n true 2>/dev/null; then
    exec unshare -n sh -c 'ip link set lo up && exec "$@"' sh "$@"
fi
if command -v unshare >/dev/null 2>&1 && unshare -rn true 2>/dev/null; then
    exec unshare -rn sh -c 'ip link set lo up 2>/dev/null; exec "$@"' sh "$@"
fi
echo "tests/isolated.sh: no network namespace available (needs root or user namespaces and iproute2); running on the host network" >&2
exec "$@"
