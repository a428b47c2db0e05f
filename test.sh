#!/usr/bin/env bash
# The one test command: every package with the race detector. The NAT lab
# tests (lab/) run when root with coturn, nftables and iproute2 installed,
# and skip with one line otherwise.
set -euo pipefail
cd "$(dirname "$0")"
exec go test -race -count=1 -timeout 30m ./... "$@"
