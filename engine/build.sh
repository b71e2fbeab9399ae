#!/usr/bin/env bash
# Find or build the Pulumi engine pieces hapx needs, and link them into one
# bin directory that the Makefile puts first on PATH:
#
#   pulumi                          the CLI           (engine/cli: pulumi/pkg v3.260.0)
#   pulumi-language-python          Python host       (engine/language-python)
#   pulumi-language-python-exec     its program shim  (from pulumi/sdk v3.260.0)
#   pulumi-resource-command         command provider  (engine/provider-command)
#   pulumi-resource-pulumi-python   launcher of Python dynamic providers (engine/pulumi-resource-pulumi-python)
#
# A piece already on PATH (an operator's normal Pulumi install) is used as it
# is. Otherwise it is built from the Go module proxy at the pinned versions
# and cached outside the clone, keyed by its sources and the Go version, so a
# second run or a fresh clone on the same machine builds nothing.
#
#   engine/build.sh            find or build everything; prints the bin dir last
#   engine/build.sh --bin-dir  only print the bin directory
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${HAPX_ENGINE_CACHE:-$HOME/.cache/hapx/engine}
bin="$cache/bin"
PULUMI_VERSION=3.260.0

if [ "${1:-}" = "--bin-dir" ]; then echo "$bin"; exit 0; fi

say() { printf '[engine %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# An executable of this name on PATH outside our own bin directory.
on_path() {
  local name=$1 dir
  local IFS=:
  for dir in $PATH; do
    [ "$dir" = "$bin" ] && continue
    [ -x "$dir/$name" ] && { echo "$dir/$name"; return 0; }
  done
  return 1
}

command -v go >/dev/null || { say "Go is needed to build the engine (no pulumi on PATH): install Go 1.26+"; exit 1; }
export GOFLAGS=-mod=readonly
go_version=$(go env GOVERSION)

# build NAME MODULE_DIR PACKAGE [LDFLAGS]: build one binary into its cache
# directory (if not there yet) and link it into $bin.
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  local key out
  key=$( { echo "$go_version $pkg $ldflags"; cd "$dir" && find . -type f \( -name '*.go' -o -name 'go.mod' -o -name 'go.sum' \) ! -name '*_test.go' | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)
  out="$cache/$name-$key"
  if [ ! -x "$out/$name" ]; then
    say "building $name (cached afterwards in $out)"
    local started=$SECONDS
    # go build is silent for minutes on a cold cache: say it is still going.
    (while sleep 30; do say "still building $name ($((SECONDS - started)) s)"; done) &
    local ticker=$!
    if ! (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/.$name.tmp" "$pkg"); then
      kill "$ticker" 2>/dev/null
      return 1
    fi
    kill "$ticker" 2>/dev/null
    mv "$out/.$name.tmp" "$out/$name"
    say "built $name in $((SECONDS - started)) s"
  else
    say "$name: cached ($out)"
  fi
  # Hard links, not symlinks: the CLI looks for its language host beside
  # its own resolved path, and the host for its shim beside itself.
  ln -f "$out/$name" "$bin/$name" 2>/dev/null || cp -f "$out/$name" "$bin/$name"
}

mkdir -p "$bin"

if existing=$(on_path pulumi); then
  say "pulumi: using $existing ($("$existing" version 2>/dev/null || echo 'version unknown'))"
  rm -f "$bin/pulumi"
else
  say "pulumi: not on PATH; using hapx's build of v$PULUMI_VERSION from the Go module proxy (the first build takes 3 to 6 minutes)"
  build pulumi "$here/cli" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
    "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"
fi

if existing=$(on_path pulumi-language-python); then
  say "pulumi-language-python: using $existing"
  rm -f "$bin/pulumi-language-python" "$bin/pulumi-language-python-exec"
else
  build pulumi-language-python "$here/language-python" .
  # The shim the host runs the program with ships in the pulumi/sdk module.
  sdk_dir=$(cd "$here/language-python" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
  [ -n "$sdk_dir" ] || { (cd "$here/language-python" && go mod download github.com/pulumi/pulumi/sdk/v3); sdk_dir=$(cd "$here/language-python" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3); }
  # The host looks for it beside its own executable.
  install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin/pulumi-language-python-exec"
fi

if existing=$(on_path pulumi-resource-command); then
  say "pulumi-resource-command: using $existing"
  rm -f "$bin/pulumi-resource-command"
else
  build pulumi-resource-command "$here/provider-command" .
fi

# Dynamic providers (hapx's drift check): a shell script, not built; copied on
# every run, so a bin directory cached before it existed gets it, and a
# changed launcher replaces the old one. A Pulumi install on PATH ships its own.
if existing=$(on_path pulumi-resource-pulumi-python); then
  say "pulumi-resource-pulumi-python: using $existing"
  rm -f "$bin/pulumi-resource-pulumi-python"
else
  install -m 0755 "$here/pulumi-resource-pulumi-python" "$bin/pulumi-resource-pulumi-python"
  say "pulumi-resource-pulumi-python: installed hapx's launcher"
fi

echo "$bin"
