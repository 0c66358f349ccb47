#!/usr/bin/env bash
# Installs Debian's prometheus (with promtool) and prometheus-pushgateway when missing; the
# observability tests run the real programs. Needs root and the Debian mirror (CI has both).
set -euo pipefail
installed() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v prometheus-pushgateway >/dev/null
}
if installed; then
  exit 0
fi
# Tests call this in parallel, and a second apt-get fails on the first one's lock: the first
# installs, the others wait here and then find it installed.
exec 9>/tmp/gan-launch-ensure-prometheus.lock
flock 9
if installed; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure-prometheus: run as root, or: apt-get install prometheus prometheus-pushgateway" >&2
  exit 1
fi
echo "ensure-prometheus: installing prometheus and prometheus-pushgateway from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends leaves out node-exporter; without systemd the services are not started.
apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway >/dev/null
