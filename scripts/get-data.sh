#!/usr/bin/env bash
# Obtain Fashion-MNIST once: the Debian package when we can run apt as root, else a verified
# download into the Keras cache. Idempotent: does nothing when the files are already found.
set -euo pipefail
TWINRUN="${TWINRUN:-.venv/bin/twinrun}"
if "$TWINRUN" data where >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing the Debian package dataset-fashion-mnist ..."
    if ! apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
        apt-get update -q >/dev/null 2>&1 || true
        apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || true
    fi
    if "$TWINRUN" data where >/dev/null 2>&1; then
        exit 0
    fi
fi
echo "Downloading Fashion-MNIST ..."
"$TWINRUN" data download
