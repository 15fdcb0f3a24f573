#!/usr/bin/env bash
# `npm test`: every test, on a fresh machine. Installs what is missing (etcd
# 3.4 from Debian, etcd 3.5 from a newer Debian suite), builds (code
# generation + tsc), compiles the tests (which type-checks them) into
# build/tests/, then runs them with node's test runner: compiled, since
# loading TypeScript through tsx costs each of the ~150 test processes about
# a second of CPU. Integration tests start their own etcd clusters on free ports,
# with whichever etcd and etcdctl come first on PATH.
#
# Three runs, each of which must pass:
#   1. every test (unit, integration, edge, browser, bench smoke) on etcd 3.5,
#      with native gRPC in the fast lane; the two that load the machine on
#      purpose (the bench smoke and the robustness pass) run in the third
#      pass's time, beside it, so that no browser or timing test waits on them;
#   2. the integration suite on etcd 3.4.23, native gRPC;
#   3. on etcd 3.5 with native gRPC served by Connect (--grpc-lane=connect),
#      the integration tests whose subject the lane serves: a file that says
#      "Lane-independent" at its top (upstream, decorators above the lanes,
#      the gateway) runs in the fast lane only.
# Both etcd lines run every integration test. Files run TEST_CONCURRENCY at
# a time (default 3): most of a test's time is spent waiting on etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
source scripts/ensure-etcd35.sh
npm run build --silent
npm run build:tests --silent
tests=build/tests/test
mapfile -t all < <(find $tests -name '*.test.js' | sort)
# The two that load the machine on purpose: a benchmark, and 8 clients per robustness run.
loaders=($tests/bench/smoke.test.js $tests/integration/robustness.test.js)
mapfile -t rest < <(printf '%s\n' "${all[@]}" | grep -vxF -f <(printf '%s\n' "${loaders[@]}"))
mapfile -t integration < <(find $tests/integration -name '*.test.js' | sort)
mapfile -t lane_dependent < <(grep -L '^// Lane-independent' "${integration[@]}")
etcd34_path="$PATH"
etcd35_path="$ETCD35_BIN:$PATH"

run() {
  echo "== $1 =="
  shift
  local began=$SECONDS
  "$@" || status=1
  echo "== $((SECONDS - began)) s =="
}
concurrency="--test-concurrency=${TEST_CONCURRENCY:-3}"
status=0
run "all tests but the loaders, etcd 3.5, native gRPC in the fast lane" \
  env PATH="$etcd35_path" node --enable-source-maps --test "$concurrency" --test-reporter=spec "${rest[@]}"
run "integration tests, etcd 3.4, native gRPC in the fast lane" \
  env PATH="$etcd34_path" node --enable-source-maps --test "$concurrency" --test-reporter=spec "${integration[@]}"
# The loaders run beside the Connect-lane pass, whose integration tests share the machine with a
# robustness run in the 3.4 pass as well; their report is printed once both are done.
loaders_report=$(mktemp)
loaders_began=$SECONDS
env PATH="$etcd35_path" node --enable-source-maps --test --test-concurrency=2 --test-reporter=spec "${loaders[@]}" \
  >"$loaders_report" 2>&1 &
loaders_pid=$!
run "lane-dependent integration tests, etcd 3.5, native gRPC served by Connect" \
  env PATH="$etcd35_path" PROXY_LANE=connect node --enable-source-maps --test "$concurrency" --test-reporter=spec "${lane_dependent[@]}"
wait $loaders_pid || status=1
echo "== the loaders (bench smoke, robustness), etcd 3.5, native gRPC in the fast lane, beside the pass above =="
cat "$loaders_report"
rm -f "$loaders_report"
echo "== $((SECONDS - loaders_began)) s =="
exit $status
