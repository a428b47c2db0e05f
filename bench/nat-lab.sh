#!/bin/sh
# nat-lab.sh: time natcheck's full diagnosis against coturn's
# turnutils_natdiscovery behind every router mode of the network-namespace
# lab (see lab/README.md), several runs each, and print a table of medians
# and of which tool was right. Needs root, iproute2, nftables and coturn.
#
#   sudo bench/nat-lab.sh                 # 5 runs per mode
#   sudo RUNS=3 bench/nat-lab.sh -modes masquerade,symmetric -v
#
# Extra arguments go to bench/natlab (-h lists them). The whole run is
# bounded by BENCH_TIMEOUT seconds (default 900).
set -eu

cd "$(dirname "$0")/.."
runs=${RUNS:-5}
limit=${BENCH_TIMEOUT:-900}

if [ "$(id -u)" != 0 ]; then
	echo "nat-lab.sh: needs root (network namespaces and nftables)" >&2
	exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
go build -o "$tmp/natlab" ./bench/natlab

# The budget inside natlab stops new runs a minute before the hard limit,
# so that labs are closed cleanly; timeout is the backstop.
budget=$((limit - 60))
[ "$budget" -gt 60 ] || budget=60
timeout --kill-after=15 "$limit" "$tmp/natlab" -runs "$runs" -budget "${budget}s" "$@"
