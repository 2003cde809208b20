#!/usr/bin/env bash
# Chromium for the review page's browser test: what is on PATH, else Debian's package (needs
# root or sudo and apt). Prints the browser's path.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null; then
    command -v "$name"
    exit 0
  fi
done
command -v apt-get >/dev/null || { echo "install-chromium: no chromium on PATH and no apt-get; install Chromium" >&2; exit 1; }
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-chromium: need root or sudo to apt-get install chromium" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-chromium: installing Debian's chromium package (one time)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
command -v chromium
