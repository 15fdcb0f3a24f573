#!/usr/bin/env bash
# Installs what the project needs and a fresh machine may lack: etcd and
# etcdctl from Debian, the command-line tools and the browser the tests use, and the npm
# packages from package-lock.json. Sourced by test.sh and demo.sh.
set -euo pipefail

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The DNS SRV discovery tests serve their records with dnsmasq.
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
# A JSON-gateway client nobody here wrote: OpenStack's etcd3gw, on Debian's python3.
/usr/bin/python3 -c "import etcd3gw" >/dev/null 2>&1 || missing+=(python3-etcd3gw)
# The dashboard's browser tests drive Debian's chromium.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing from Debian: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ci when node_modules is absent or older than the lock file.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm packages"
  # The registry sometimes stalls (EIDLETIMEOUT): try again before failing.
  for attempt in 1 2 3; do
    npm ci --no-audit --no-fund --loglevel=error --fetch-retries=4 && break
    [ "$attempt" = 3 ] && exit 1
    echo "npm ci failed (attempt $attempt); retrying in 10 s"
    sleep 10
  done
fi
