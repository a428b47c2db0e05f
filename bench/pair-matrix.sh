#!/usr/bin/env bash
# bench/pair-matrix.sh [RUNS]: runs the lab's natcheck pair matrix
# (internal/lab TestPair, both sites behind their own kernel NAT) RUNS times
# (default 3) and prints, per pair of sites, what the kernel allows, the
# prediction, how often each outcome came, how often it matched, and the
# median connect_ms (offer to connected) and present_to_connected_ms (both
# peers in the room to connected) over both sides of every run.
# Needs root, coturn, nftables and iproute2 (as ./test.sh's lab does).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
case $runs in '' | *[!0-9]*) echo "usage: bench/pair-matrix.sh [RUNS]" >&2; exit 2 ;; esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq 1 "$runs"); do
  echo "run $i of $runs" >&2
  go test -count=1 -run 'TestPair$' -v ./internal/lab/ >>"$log" 2>&1 || {
    echo "run $i failed:" >&2
    grep -E -- '--- FAIL|_test.go:[0-9]+: ' "$log" | tail -20 >&2
    exit 1
  }
done
# Table rows of the matrix the test logs: | sites | kernel | predicted |
# outcome | matched | connect A / B | present A / B |
grep -E '^\s+\| [a-z0-9]+-(drop|accept)_x_' "$log" | awk -F'|' '
function median(list,   n, a, i, j, t) {
  n = split(list, a, " ")
  if (n == 0) return "-"
  for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
  return a[int((n + 1) / 2)]
}
function add(key, field,   n, p, k) {
  n = split(field, p, "/")
  for (k = 1; k <= n; k++) { gsub(/ /, "", p[k]); if (p[k] != "" && p[k] != "-" && p[k] != "null") vals[key] = vals[key] " " p[k] }
}
{
  for (i = 2; i <= 8; i++) gsub(/^ +| +$/, "", $i)
  name = $2
  if (!(name in kernel)) order[++cases] = name
  kernel[name] = $3; predicted[name] = $4
  outcomes[name, $5]++
  runs[name]++
  if ($6 == "true") matched[name]++
  add(name SUBSEP "c", $7); add(name SUBSEP "p", $8)
}
END {
  print "| sites (A_x_B) | kernel | predicted | direct / relay / failed | matched | connect_ms (median) | present_to_connected_ms (median) |"
  print "|---|---|---|---|---|---|---|"
  for (i = 1; i <= cases; i++) {
    n = order[i]
    printf "| %s | %s | %s | %d / %d / %d | %d of %d | %s | %s |\n", n, kernel[n], predicted[n], \
      outcomes[n, "direct"], outcomes[n, "relay"], outcomes[n, "failed"], matched[n], runs[n], \
      median(vals[n SUBSEP "c"]), median(vals[n SUBSEP "p"])
  }
}'
