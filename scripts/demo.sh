#!/usr/bin/env bash
# `npm run demo`: a local etcd (unless one already answers), the proxy in
# front of it, a few sample keys, and examples to try. Ctrl-C stops it all.
#   ETCD_ENDPOINT   etcd to use or start   (default 127.0.0.1:2379)
#   LISTEN          the proxy's address    (default 127.0.0.1:23790)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
npm run build --silent

etcd_endpoint=${ETCD_ENDPOINT:-127.0.0.1:2379}
listen=${LISTEN:-127.0.0.1:23790}
pids=()
data_dir=""
cleanup() {
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$data_dir" ] && rm -rf "$data_dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_for() { # url, what
  for _ in $(seq 1 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$2 did not come up" >&2; exit 1
}

if curl -sf "http://$etcd_endpoint/health" >/dev/null 2>&1; then
  echo "using the etcd already running at $etcd_endpoint"
else
  data_dir=$(mktemp -d)
  peer_port=$(( ${etcd_endpoint##*:} + 1 ))
  echo "starting etcd at $etcd_endpoint (data in $data_dir)"
  etcd --name demo --data-dir "$data_dir/etcd" \
    --listen-client-urls "http://$etcd_endpoint" --advertise-client-urls "http://$etcd_endpoint" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "demo=http://127.0.0.1:$peer_port" >"$data_dir/etcd.log" 2>&1 &
  pids+=($!)
  wait_for "http://$etcd_endpoint/health" etcd
fi

node bin/etcd-connect-proxy.js start --endpoints="$etcd_endpoint" --listen-addr="$listen" &
pids+=($!)
wait_for "http://$listen/livez" "the proxy"

export ETCDCTL_API=3
for kv in "demo/greeting=hello from etcd-connect-proxy" "demo/config/replicas=3" 'demo/config/json={"feature":true}'; do
  etcdctl --endpoints="$listen" put "${kv%%=*}" "${kv#*=}" >/dev/null
done

cat <<TXT

etcd-connect-proxy is serving on $listen, in front of etcd at $etcd_endpoint.

  Dashboard:  http://$listen/

Sample keys are under demo/. Try, in another terminal:

  etcdctl --endpoints=$listen get demo/ --prefix
  etcdctl --endpoints=$listen watch demo/ --prefix
  etcdctl --endpoints=$listen put demo/greeting hi
  curl -s http://$listen/health
  curl -s http://$listen/etcdserverpb.KV/Range -H 'content-type: application/json' \\
       -d '{"key":"$(printf demo/ | base64)","rangeEnd":"$(printf demo0 | base64)"}'

  curl -L http://$listen/v3/kv/range -X POST -d '{"key": "$(printf demo/greeting | base64)"}'

Press Ctrl-C to stop.
TXT
wait "${pids[-1]}"
