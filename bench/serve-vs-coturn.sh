#!/bin/sh
# serve-vs-coturn.sh: Binding requests per second that `natcheck serve` and
# coturn (`turnserver --stun-only`) answer on this machine, in the same run,
# under the same bounded load from bench/stunload on loopback, with p50/p99
# latency and memory (VmRSS after the load, VmHWM peak, from /proc).
#
#   bench/serve-vs-coturn.sh
#   SOCKETS=32 WINDOW=16 REQUESTS=500000 DURATION=15s ROUNDS=3 bench/serve-vs-coturn.sh
#
# Needs Go and coturn (Debian package coturn). Loopback only; every server
# is stopped on exit. Each round loads each server in turn (alternating
# which goes first); the table has one line per server and round.
set -eu

cd "$(dirname "$0")/.."
sockets=${SOCKETS:-16}
window=${WINDOW:-8}
requests=${REQUESTS:-1000000}
duration=${DURATION:-10s}
rounds=${ROUNDS:-2}
port_natcheck=${PORT_NATCHECK:-23478}
port_coturn=${PORT_COTURN:-23578}

if ! command -v turnserver >/dev/null 2>&1; then
	echo "serve-vs-coturn.sh: turnserver not found (apt-get install coturn)" >&2
	exit 2
fi

tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do
		# bounded wait for each server to exit
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

go build -o "$tmp/natcheck" ./cmd/natcheck
go build -o "$tmp/stunload" ./bench/stunload

# wait_udp PORT: wait (at most 5 s) until a Binding request is answered.
wait_udp() {
	i=0
	while [ $i -lt 50 ]; do
		if "$tmp/stunload" -server "127.0.0.1:$1" -sockets 1 -window 1 -requests 1 -duration 1s -timeout 100ms 2>/dev/null | grep -q 'answered=1 '; then
			return 0
		fi
		sleep 0.1
		i=$((i + 1))
	done
	echo "serve-vs-coturn.sh: nothing answers on 127.0.0.1:$1" >&2
	exit 1
}

"$tmp/natcheck" serve --primary "127.0.0.1:$port_natcheck" --alternate "127.0.0.2:$((port_natcheck + 1))" \
	--log-level warn --stats-interval 0 2>"$tmp/natcheck.log" &
pid_natcheck=$!
pids="$pids $pid_natcheck"

cat >"$tmp/turnserver.conf" <<EOF
listening-ip=127.0.0.1
listening-port=$port_coturn
stun-only
no-cli
no-tls
no-dtls
no-stdout-log
log-file=$tmp/turnserver.log
pidfile=$tmp/turnserver.pid
EOF
turnserver -c "$tmp/turnserver.conf" >/dev/null 2>&1 &
pid_coturn=$!
pids="$pids $pid_coturn"

wait_udp "$port_natcheck"
wait_udp "$port_coturn"

mem() { # PID FIELD: a /proc/PID/status field in MiB
	awk -v f="$2:" '$1 == f { printf "%.1f MiB", $2 / 1024 }' "/proc/$1/status"
}

load() { # NAME PID PORT
	out=$("$tmp/stunload" -server "127.0.0.1:$3" -sockets "$sockets" -window "$window" \
		-requests "$requests" -duration "$duration")
	rps=$(echo "$out" | sed -n 's/.* rps=\([0-9]*\).*/\1/p')
	p50=$(echo "$out" | sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p')
	p99=$(echo "$out" | sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p')
	ans=$(echo "$out" | sed -n 's/.*answered=\([0-9]*\).*/\1/p')
	lost=$(echo "$out" | sed -n 's/.*lost=\([0-9]*\).*/\1/p')
	printf '| %-14s | %9s | %8s us | %8s us | %10s | %10s | %9s | %6s |\n' \
		"$1" "$rps" "$p50" "$p99" "$(mem "$2" VmRSS)" "$(mem "$2" VmHWM)" "$ans" "$lost"
}

echo "$(nproc) CPUs; $sockets sockets x $window in flight; at most $requests requests or $duration per run"
echo "| server         |     req/s |        p50 |        p99 |        RSS |   peak RSS |  answered |   lost |"
echo "|----------------|-----------|------------|------------|------------|------------|-----------|--------|"
r=1
while [ $r -le "$rounds" ]; do
	if [ $((r % 2)) = 1 ]; then
		load "natcheck serve" "$pid_natcheck" "$port_natcheck"
		load "coturn" "$pid_coturn" "$port_coturn"
	else
		load "coturn" "$pid_coturn" "$port_coturn"
		load "natcheck serve" "$pid_natcheck" "$port_natcheck"
	fi
	r=$((r + 1))
done
echo "coturn $(turnserver --version 2>/dev/null | head -1 || true)"
