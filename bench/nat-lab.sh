#!/bin/sh
# nat-lab.sh: run natcheck's full diagnosis and coturn's
# turnutils_natdiscovery behind every router kind of the network-namespace
# lab (see internal/lab/README.md), for each router input policy (drop, accept) and
# UDP loss level, several runs each, several labs at once, and print a table
# of right / unknown / wrong answers and natcheck's run times, and whether
# the accuracy and run-time goals were met. Needs root, iproute2, nftables
# and coturn.
#
#   sudo bench/nat-lab.sh                          # 5 runs per configuration, no loss
#   sudo RUNS=2 bench/nat-lab.sh -loss 0,20        # smoke run, with 20% loss too
#   sudo RUNS=3 bench/nat-lab.sh -modes masquerade,symmetric -inputs accept -v
#
# Extra arguments go to bench/natlab (-h lists them). RUNS (default 5) is
# the runs of each tool per kind, input policy and loss level; PARALLEL
# (default 4) the labs at once. The whole run is bounded by BENCH_TIMEOUT
# seconds (default 1800).
set -eu

cd "$(dirname "$0")/.."
runs=${RUNS:-5}
parallel=${PARALLEL:-4}
limit=${BENCH_TIMEOUT:-1800}

if [ "$(id -u)" != 0 ]; then
	echo "nat-lab.sh: needs root (network namespaces and nftables)" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
go build -o "$tmp/natlab" ./bench/natlab

# The budget inside natlab stops new runs 90 s before the hard limit (a
# natdiscovery run under way takes at most 60 s), so that the labs are
# closed cleanly; timeout is the backstop.
budget=$((limit - 90))
[ "$budget" -gt 60 ] || budget=60
timeout --kill-after=15 "$limit" "$tmp/natlab" -runs "$runs" -parallel "$parallel" -budget "${budget}s" "$@"
