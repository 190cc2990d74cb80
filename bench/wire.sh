#!/usr/bin/env bash
# wire.sh measures the wire path against its two references (issue 17),
# as ratios, so a run on a shared machine can be compared with another:
#
#  1. kvstream serve --profile throughput (fsync'd) driven through
#     aws-sdk-go-v2 by `kvstream bench --endpoint --ceiling`, beside the
#     same client against its built-in no-op endpoint (the client's own
#     limit), with the server's CPU per record from its /metrics;
#  2. BenchmarkServerCPUPerRecord: the server's CPU per record next to
#     the embedded engine's for the same 500 × 100 B batches, in one
#     process, with the HTTP client in a child process (ratio-to-engine).
#
# Usage (from the repository root): bench/wire.sh [rounds] [duration]
# Defaults: 3 rounds, 5s phases. WIRE_WORKLOADS overrides the endpoint
# workloads (default: all four, putrecords putrecord getrecords subscribe).
set -euo pipefail

rounds=${1:-3}
duration=${2:-5s}
workloads=${WIRE_WORKLOADS:-putrecords putrecord getrecords subscribe}

tmp=$(mktemp -d)
server_pid=
cleanup() {
	if [[ -n $server_pid ]]; then kill -INT "$server_pid" 2>/dev/null && wait "$server_pid" || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/kvstream" ./cmd/kvstream
"$tmp/kvstream" serve --data "$tmp/data" --profile throughput --addr 127.0.0.1:0 >"$tmp/serve.log" 2>&1 &
server_pid=$!
url=
for _ in $(seq 100); do
	url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/serve.log" || true)
	[[ -n $url ]] && break
	sleep 0.1
done
[[ -n $url ]] || { cat "$tmp/serve.log"; exit 1; }

echo "== kvstream serve ($url) vs the no-op endpoint, through aws-sdk-go-v2"
# shellcheck disable=SC2086
"$tmp/kvstream" bench --endpoint "$url" --ceiling --workers 8 --duration "$duration" \
	--rounds "$rounds" --records 200000 --progress=false $workloads
kill -INT "$server_pid"
wait "$server_pid" || true
server_pid=

echo
echo "== server CPU per record vs the embedded engine's, same batches (1 M records per side per round)"
for _ in $(seq "$rounds"); do
	go test ./server -run '^$' -bench ServerCPUPerRecord -benchtime 2000x -count 1 | grep '^Benchmark'
done
