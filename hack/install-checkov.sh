#!/usr/bin/env bash
# checkov in its own virtualenv under the cache (its dependencies must not pin ours).
# Prints the checkov executable's path.
set -euo pipefail
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
CACHE="${ONCEFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/onceflow}"
VENV="$CACHE/checkov-$CHECKOV_VERSION"
if [[ -f "$VENV/.complete" ]]; then
  echo "$VENV/bin/checkov"
  exit 0
fi
echo "install-checkov: installing checkov $CHECKOV_VERSION into $VENV (one time)" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION" >&2
touch "$VENV/.complete"
echo "$VENV/bin/checkov"
