#!/usr/bin/env bash
# Run the Pulumi CLI as hapx's Makefile does: the engine's bin directory
# first on PATH (engine/build.sh), a local file state backend (no Pulumi
# Cloud account), and the stack passphrase from a file.
#
#   scripts/pulumi.sh preview -s dev
#
# Override any of it with the usual variables: PULUMI_BACKEND_URL,
# PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

PATH="$(bash "$root/engine/build.sh" --bin-dir):$PATH"
export PATH
# No internet here for update checks or plugin downloads.
export PULUMI_SKIP_UPDATE_CHECK=true
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  mkdir -p "$root/.state"
  export PULUMI_BACKEND_URL="file://$root/.state"
fi
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  # One passphrase per user, generated on first use: it encrypts every
  # stack's secrets in the state files, so keep it (and back it up).
  passphrase_file=${XDG_CONFIG_HOME:-$HOME/.config}/hapx/passphrase
  if [ ! -s "$passphrase_file" ]; then
    mkdir -p "$(dirname "$passphrase_file")"
    (umask 077 && head -c 32 /dev/urandom | base64 > "$passphrase_file")
    echo "[hapx] generated the stack passphrase in $passphrase_file; keep it, it decrypts your stacks' secrets" >&2
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE=$passphrase_file
fi
cd "$root"
exec pulumi "$@"
