#!/usr/bin/env bash
# Makes Debian's Chromium available for the browser tests (tests/browser), which drive
# /usr/bin/chromium through Playwright. Installs it when missing and we are root; otherwise
# says why the browser tests will be skipped. Never fails the build by itself.
set -uo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  echo "==> installing Debian's chromium for the browser tests"
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    echo "==> chromium installed: $("$CHROMIUM" --version 2>/dev/null)"
    exit 0
  fi
  echo "!! apt-get could not install chromium: the browser tests (tests/browser) will be SKIPPED" >&2
  exit 0
fi

echo "!! $CHROMIUM is missing and this user is not root, so it cannot be installed:" >&2
echo "!! the browser tests (tests/browser) will be SKIPPED. Install it with: sudo apt-get install chromium" >&2
exit 0
