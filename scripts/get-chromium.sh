#!/usr/bin/env bash
# Headless Chromium for the report tests (tests/test_report_browser.py drives it with Playwright;
# browser downloads by Playwright are not used). Idempotent: does nothing when a Chromium is
# already installed. Installs Debian's `chromium` with apt when run as root; otherwise says how,
# and the browser tests skip (except under CI=true, where they fail).
set -euo pipefail
for browser in chromium chromium-browser; do
    if command -v "$browser" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing the Debian package chromium (for the report tests) ..."
    if ! apt-get install -y -q chromium >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q chromium >/dev/null 2>&1 || true
    fi
    if command -v chromium >/dev/null 2>&1; then
        exit 0
    fi
    echo "Could not install chromium with apt; the browser tests of the reports will skip." >&2
    exit 0
fi
echo "Chromium is not installed; the browser tests of the reports will skip." \
     "Install it with: sudo apt-get install chromium" >&2
