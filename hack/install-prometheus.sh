#!/usr/bin/env bash
# Make sure prometheus and promtool are on this machine (tests run a real Prometheus for canary
# analysis and check the chart's alert rules with promtool). Uses what is on PATH; otherwise
# installs Debian's `prometheus` package (needs root and apt). Prints the prometheus binary's path.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  command -v prometheus
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-prometheus: prometheus and promtool are not on PATH and there is no apt-get;" \
       "install Prometheus 2.x (with promtool) and re-run" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || { echo "install-prometheus: need root or sudo to apt-get install prometheus" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-prometheus: installing Debian's prometheus package (one time)" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
command -v prometheus
