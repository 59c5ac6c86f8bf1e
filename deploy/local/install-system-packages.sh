#!/usr/bin/env bash
# System packages the local stack needs (Debian/Ubuntu). Idempotent; installs only what is missing.
set -euo pipefail
need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
{ command -v clickhouse-server >/dev/null || [ -x /usr/sbin/clickhouse-server ] || [ -x /usr/bin/clickhouse-server ]; } \
  || need+=(clickhouse-server clickhouse-client)
command -v python3 >/dev/null || need+=(python3 python3-venv)
# The dashboard's end-to-end tests drive the system Chromium (Playwright never downloads one).
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "agentwatch: missing system packages: ${need[*]}" >&2
  echo "agentwatch: install them with your package manager (Debian: sudo apt-get install ${need[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${need[@]}"
