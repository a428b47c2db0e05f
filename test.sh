#!/usr/bin/env bash
# The one test command: every package with the race detector. The other
# packages' results come through .ci/testlog: a line per package, the
# output of failed tests, and one "SKIP package Test: reason" line per
# skipped test. The NAT lab tests (internal/lab/) run when root with coturn,
# nftables and iproute2 installed, and skip with one line otherwise; their
# summary ("lab: N cases ran", or why they skipped) is printed at the end.
# A full run (no arguments) as root with ip, nft and turnserver present
# fails when fewer than $lab_min_cases lab cases ran: a lab that silently
# ran nothing must not pass.
set -euo pipefail
cd "$(dirname "$0")"

# The lab's cases (internal/lab, counted()): TestModes 8 modes x 2 input
# policies x 3, TestHairpin 3, TestLoss 4, TestPathsOut 5,
# TestCoturnResponsePort 6, TestRemoveStale 1, TestTURN 5, TestLifetime 2 (no loss, 20% loss),
# TestPairLab 15, TestPair 24, TestPairServerPeer 11, TestPortmapNoGateway 1,
# TestPortmapMiniupnpd 6, TestPortmapCGNAT 5, TestModes6 8, TestNAT64 1, TestLoss6 2,
# TestPair6 3.
lab_min_cases=150

go test -race -count=1 -timeout 30m -json $(go list ./... | grep -v '/internal/lab$') "$@" | go run ./.ci/testlog

# The lab verbosely, keeping only what a reader needs: skips, failures, the
# case count and the closing line.
lab_log=$(mktemp)
trap 'rm -f "$lab_log"' EXIT
set +e
go test -race -count=1 -timeout 30m -v ./internal/lab/ "$@" | tee "$lab_log" |
  grep -E '^(lab: |ok |FAIL|PASS$|--- (FAIL|SKIP)|panic:)|^\s+(lab: |.*_test\.go:[0-9]+: )'
status=${PIPESTATUS[0]}
set -e

lab_can_run() {
  [ "$(id -u)" = 0 ] || return 1
  for bin in ip nft turnserver; do
    command -v "$bin" >/dev/null || return 1
  done
}
if [ "$#" -eq 0 ] && lab_can_run; then
  ran=$(sed -n 's/^lab: \([0-9][0-9]*\) cases ran$/\1/p' "$lab_log" | tail -n 1)
  if [ "${ran:-0}" -lt "$lab_min_cases" ]; then
    echo "lab: ${ran:-no} cases ran, want at least $lab_min_cases: as root with ip, nft and turnserver the whole lab must run (see the SKIP lines above)"
    status=1
  fi
fi
exit "$status"
