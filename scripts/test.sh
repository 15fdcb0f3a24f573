#!/usr/bin/env bash
# `npm test`: every test, on a fresh machine. Installs what is missing, builds
# (code generation + tsc), then runs unit and integration tests with node's
# test runner. Integration tests start their own etcd clusters on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-deps.sh
npm run build --silent
npm run typecheck --silent
mapfile -t files < <(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-reporter=spec "${files[@]}"
