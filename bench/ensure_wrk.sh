#!/usr/bin/env bash
# wrk, the load generator of `make bench`: Debian's package, installed when missing and we are root.
set -euo pipefail
command -v wrk >/dev/null && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "make bench needs wrk and cannot install it here (not root, or no apt-get):" >&2
    echo "  sudo apt-get install -y wrk     (Debian/Ubuntu; wrk is in most distributions' packages)" >&2
    exit 1
fi
echo "==> installing wrk (apt-get install -y wrk)"
apt-get install -y -q wrk >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
command -v wrk >/dev/null || { echo "wrk did not install" >&2; exit 1; }
