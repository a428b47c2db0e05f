#!/usr/bin/env bash
# The one test command: every package with the race detector. The NAT lab
# tests (internal/lab/) run when root with coturn, nftables and iproute2 installed,
# and skip with one line otherwise; their summary ("lab: N cases ran", or
# why they skipped) is printed at the end.
set -euo pipefail
cd "$(dirname "$0")"
go test -race -count=1 -timeout 30m $(go list ./... | grep -v '/internal/lab$') "$@"
# The lab verbosely, keeping only what a reader needs: skips, failures, the
# case count and the closing line.
set +e
go test -race -count=1 -timeout 30m -v ./internal/lab/ "$@" |
  grep -E '^(lab: |ok |FAIL|PASS$|--- (FAIL|SKIP)|panic:)|^\s+(lab: |.*_test\.go:[0-9]+: )'
status=${PIPESTATUS[0]}
exit "$status"
