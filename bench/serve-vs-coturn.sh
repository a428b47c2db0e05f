#!/bin/sh
# serve-vs-coturn.sh: Binding requests per second that `natcheck serve` and
# coturn (`turnserver --stun-only`) answer on this machine, in the same run,
# under the same bounded load from bench/stunload on loopback, with p50/p99
# latency and memory (VmRSS after the load, VmHWM peak, from /proc).
#
#   bench/serve-vs-coturn.sh
#   SOCKETS=8 WINDOW=32 ROUNDS=5 bench/serve-vs-coturn.sh    # few sources, deep windows
#   SOCKETS=64 WINDOW=2 ROUNDS=5 bench/serve-vs-coturn.sh    # many sources, shallow windows
#   SOCKETS=32 WINDOW=16 REQUESTS=500000 DURATION=15s ROUNDS=3 bench/serve-vs-coturn.sh
#
# Needs Go and coturn (Debian package coturn). Loopback only; every server
# is stopped on exit. Each round loads each server in turn (alternating
# which goes first); the table has one line per server and round, then the
# median and range of req/s per server and the ratio of the medians.
#
# Both servers run with their defaults apart from what the load needs:
# coturn 4.6 on Linux starts one relay thread per CPU, each with its own
# SO_REUSEPORT socket on the listening address, and asks for socket buffers
# of net.core.rmem_max/wmem_max; natcheck serve runs its limiter. The load
# generator's source is trusted (TRUST=1, the default: --trust 127.0.0.0/8)
# so that its requests are answered and the figure includes the cost of the
# limiter's check; with a natcheck that has no --trust flag the script says
# so and runs without it. TRUST=0 runs without --trust. The same stunload
# binary, with the same flags, loads both servers.
set -eu

cd "$(dirname "$0")/.."
sockets=${SOCKETS:-16}
window=${WINDOW:-8}
requests=${REQUESTS:-1000000}
duration=${DURATION:-10s}
rounds=${ROUNDS:-2}
port_natcheck=${PORT_NATCHECK:-23478}
port_coturn=${PORT_COTURN:-23578}
batch=${BATCH:-32}
# PROCS=N runs the generator on at most N CPUs at once (GOMAXPROCS); 0, the
# default, on all of them.
procs=${PROCS:-0}
trust=${TRUST:-1}

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

# NATCHECK_BIN: a natcheck binary to load instead of building this tree
# (to compare builds under the same load).
if [ -n "${NATCHECK_BIN:-}" ]; then
	cp "$NATCHECK_BIN" "$tmp/natcheck"
else
	go build -o "$tmp/natcheck" ./cmd/natcheck
fi
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

trust_flags=""
if [ "$trust" = 1 ]; then
	if "$tmp/natcheck" serve --help 2>&1 | grep -Eq -- '^ +-trust( |$)'; then
		trust_flags="--trust 127.0.0.0/8"
	else
		echo "serve-vs-coturn.sh: this natcheck serve has no --trust flag; running without it (the limiter only limits reflected responses there)" >&2
	fi
fi
# shellcheck disable=SC2086 # trust_flags is empty or two words
"$tmp/natcheck" serve --primary "127.0.0.1:$port_natcheck" --alternate "127.0.0.2:$((port_natcheck + 1))" \
	--log-level warn --stats-interval 0 $trust_flags 2>"$tmp/natcheck.log" &
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

cpu_ticks() { # PID: user+system CPU time of PID in clock ticks
	# the command name, field 2, has no spaces here
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

load() { # NAME PID PORT
	t0=$(cpu_ticks "$2")
	out=$("$tmp/stunload" -server "127.0.0.1:$3" -sockets "$sockets" -window "$window" \
		-requests "$requests" -duration "$duration" -batch "$batch" -procs "$procs")
	t1=$(cpu_ticks "$2")
	rps=$(echo "$out" | sed -n 's/.* rps=\([0-9]*\).*/\1/p')
	p50=$(echo "$out" | sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p')
	p99=$(echo "$out" | sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p')
	ans=$(echo "$out" | sed -n 's/.*answered=\([0-9]*\).*/\1/p')
	lost=$(echo "$out" | sed -n 's/.*lost=\([0-9]*\).*/\1/p')
	cpu=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$ans" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }')
	printf '| %-14s | %9s | %8s us | %8s us | %7s us | %10s | %10s | %9s | %6s |\n' \
		"$1" "$rps" "$p50" "$p99" "$cpu" "$(mem "$2" VmRSS)" "$(mem "$2" VmHWM)" "$ans" "$lost"
	echo "$1 $rps" >>"$tmp/rps"
}

# summary NAME: median and range of req/s of NAME's runs
summary() {
	sed -n "s/^$1 //p" "$tmp/rps" | sort -n | awk '{ v[NR] = $1 } END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.0f %d %d\n", m, v[1], v[NR] }'
}

echo "$(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg) before the runs"
echo "$sockets sockets x $window in flight; at most $requests requests or $duration per run; stunload -batch $batch -procs $procs"
echo "natcheck serve flags: --primary 127.0.0.1:$port_natcheck --alternate 127.0.0.2:$((port_natcheck + 1)) ${trust_flags:-(no --trust)}"
echo "| server         |     req/s |        p50 |        p99 |    CPU/req |        RSS |   peak RSS |  answered |   lost |"
echo "|----------------|-----------|------------|------------|------------|------------|------------|-----------|--------|"
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
set -- $(summary "natcheck serve")
nc_med=$1 nc_lo=$2 nc_hi=$3
set -- $(summary coturn)
ct_med=$1 ct_lo=$2 ct_hi=$3
echo "natcheck serve: median $nc_med req/s ($nc_lo-$nc_hi); coturn: median $ct_med req/s ($ct_lo-$ct_hi); ratio of medians $(awk -v a="$nc_med" -v b="$ct_med" 'BEGIN { printf "%.2f", a / b }')"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) after the runs"
echo "coturn $(turnserver --version 2>/dev/null | head -1 || true)"
