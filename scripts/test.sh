#!/usr/bin/env bash
# `npm test`: every test, on a fresh machine. Installs what is missing, builds
# (code generation + tsc), type-checks the tests, then runs them with node's
# test runner. Integration tests start their own etcd clusters on free ports.
#
# The integration suite runs twice: with native gRPC in the fast lane (the
# default), then served by Connect (--grpc-lane=connect). Both must pass.
# test/edge (HTTP/2 attacks, fuzzing, h2spec) starts its own proxy process
# with default flags, so it runs once.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
npm run build --silent
npm run typecheck --silent
mapfile -t all < <(find test -name '*.test.ts' | sort)
mapfile -t integration < <(find test/integration -name '*.test.ts' | sort)

status=0
echo "== all tests, native gRPC in the fast lane =="
node --import tsx --test --test-reporter=spec "${all[@]}" || status=1
echo "== integration tests, native gRPC served by Connect =="
PROXY_LANE=connect node --import tsx --test --test-reporter=spec "${integration[@]}" || status=1
exit $status
