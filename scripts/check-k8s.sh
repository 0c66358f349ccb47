#!/usr/bin/env bash
# Validates Kubernetes manifests offline:
#   core kinds (Service, Job, ConfigMap, PVC, ...)  kubernetes-validate --strict (PyPI; bundled schemas)
#   JobSet                                          k8s/schemas/jobset-v1alpha2.schema.json (strict) and
#                                                   each job template against the batch/v1 Job schema
#   PodMonitor                                      @kubernetes-models/prometheus-operator (the operator's
#                                                   CRD schema: types, enums, required) and tsc against its
#                                                   TypeScript type (unknown fields)
# The tools are installed on first use into caches outside the checkout, keyed by their versions.
#   usage: scripts/check-k8s.sh FILE.yaml...
set -euo pipefail
K8S_VERSION=1.34.0
KV_VERSION=1.37.0
PO_VERSION=6.0.0
TS_VERSION=7.0.2
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${GAN_LAUNCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gan-launch}
venv="$cache/kubernetes-validate-$KV_VERSION"
npm_dir="$cache/prometheus-operator-models-$PO_VERSION-ts-$TS_VERSION"

# Tests call this in parallel: the first installs, the others wait on the lock, then find the
# tools complete (without it, one would delete a venv the other is installing into).
mkdir -p "$cache"
exec 9>"$cache/.install.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "check-k8s: installing kubernetes-validate==$KV_VERSION into $venv" >&2
  rm -rf "$venv" && python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  touch "$venv/.complete"
fi
if [ ! -f "$npm_dir/.complete" ]; then
  echo "check-k8s: installing @kubernetes-models/prometheus-operator@$PO_VERSION into $npm_dir" >&2
  rm -rf "$npm_dir" && mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
    "@kubernetes-models/prometheus-operator@$PO_VERSION" "js-yaml@4" "typescript@$TS_VERSION" >/dev/null)
  cat > "$npm_dir/check-podmonitor.mjs" <<'JS'
import * as yaml from "js-yaml";
import fs from "fs";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
const docs = yaml.loadAll(fs.readFileSync(process.argv[2], "utf8")).filter((d) => d && d.kind === "PodMonitor");
let failed = false;
for (const doc of docs) {
  try {
    new PodMonitor(doc).validate();
    console.log(`INFO ${process.argv[2]} passed for resource podmonitor/${doc.metadata.name}`);
  } catch (e) {
    console.log(`ERROR ${process.argv[2]}: podmonitor/${doc.metadata?.name}: ${e.message}`);
    failed = true;
  }
  // The typed literal for tsc: unknown fields are excess-property errors there.
  fs.writeFileSync(process.argv[3], "import type { IPodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor';\n" +
    `export const podMonitor: IPodMonitor = ${JSON.stringify(doc, null, 2)};\n`);
}
process.exit(failed ? 1 : 0);
JS
  touch "$npm_dir/.complete"
fi
exec 9>&- # installed: checks run in parallel

status=0
for file in "$@"; do
  file=$(realpath "$file")
  kinds=$(sed -n 's/^kind: *//p' "$file" | sort -u)
  case "$kinds" in
    JobSet)
      "$venv/bin/python" "$repo/scripts/check_k8s_crds.py" "$K8S_VERSION" "$file" || status=1 ;;
    PodMonitor)
      typed=$(mktemp "$npm_dir/podmonitor.XXXXXX.ts")
      if (cd "$npm_dir" && node check-podmonitor.mjs "$file" "$typed") \
         && (cd "$npm_dir" && npx --no-install tsc --noEmit --strict --skipLibCheck --module esnext \
               --moduleResolution bundler --target es2022 "$typed"); then :; else
        echo "ERROR $file: does not match the PodMonitor schema" >&2
        status=1
      fi
      rm -f "$typed" ;;
    *)
      "$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" "$file" || status=1 ;;
  esac
done
exit $status
