#!/usr/bin/env bash
# Type-checks Grafana dashboard JSON against Grafana's published schema types (@grafana/schema)
# with tsc: each file is pasted as a literal typed `Dashboard`, so unknown keys, wrong types and
# missing required fields are errors. The npm packages live in a cache outside the checkout,
# keyed by their versions, and are installed on first use.
#   usage: scripts/check-dashboards.sh FILE.json...
set -euo pipefail
SCHEMA_VERSION=13.2.3
TS_VERSION=7.0.2
cache=${GAN_LAUNCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gan-launch}
dir="$cache/grafana-schema-$SCHEMA_VERSION-ts-$TS_VERSION"
# Parallel callers: the first installs, the others wait on the lock and find it complete.
mkdir -p "$cache"
exec 9>"$cache/.install.lock"
flock 9
if [ ! -f "$dir/.complete" ]; then
  echo "check-dashboards: installing @grafana/schema@$SCHEMA_VERSION typescript@$TS_VERSION into $dir" >&2
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
    "@grafana/schema@$SCHEMA_VERSION" "typescript@$TS_VERSION" >/dev/null)
  touch "$dir/.complete"
fi
exec 9>&- # installed: checks run in parallel
work=$(mktemp -d "$dir/check.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0
for file in "$@"; do
  name=$(basename "$file" .json | tr -c 'a-zA-Z0-9\n' '_')
  {
    echo "import type { Dashboard } from '@grafana/schema';"
    echo "export const dashboard_$name: Dashboard = "
    cat "$file"
    echo ";"
  } > "$work/$name.ts"
  if (cd "$dir" && npx --no-install tsc --noEmit --strict --skipLibCheck --module esnext \
        --moduleResolution bundler --target es2022 "$work/$name.ts"); then
    echo "check-dashboards: $file: ok"
  else
    echo "check-dashboards: $file: does not match Grafana's Dashboard type" >&2
    status=1
  fi
done
exit $status
