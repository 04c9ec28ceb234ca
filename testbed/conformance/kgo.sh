#!/usr/bin/env bash
# Runs franz-go's own pkg/kgo integration suite (a peer's test suite) against
# a real `ferry edge` on 127.0.0.1. The suite comes from the module cache at
# the version in go.mod and is copied to a temporary directory; nothing of it
# is committed. docs/conformance.md lists what is skipped or fails, and why.
#
#   testbed/conformance/kgo.sh            # the whole suite (~4 min on 2 cores)
#   KGO_RUN='TestGroupETL|...' testbed/conformance/kgo.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

# Features ferry does not advertise (transactions, SASL, share groups,
# KIP-848 groups, TLS) and the chaos mode are skipped; see docs/conformance.md.
skip=${KGO_SKIP:-'Txn|SCRAM|Share|848|TLS|Chaos'}
run=${KGO_RUN:-.}

work=$(mktemp -d)
ferry_pid=
cleanup() {
	[ -n "$ferry_pid" ] && kill -TERM "$ferry_pid" 2>/dev/null && wait "$ferry_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

version=$(go list -m -f '{{.Version}}' github.com/twmb/franz-go)
go mod download github.com/twmb/franz-go@"$version"
src=$(go list -m -f '{{.Dir}}' github.com/twmb/franz-go)
cp -r "$src" "$work/franz-go"
chmod -R u+w "$work/franz-go"

go build -o "$work/ferry" ./cmd/ferry
"$work/ferry" edge --data-dir "$work/data" --admin-addr 127.0.0.1:0 --kafka-addr 127.0.0.1:0 \
	--log-format json --log-level info 2>"$work/ferry.log" &
ferry_pid=$!
addr=
for _ in $(seq 1 100); do
	addr=$(grep -o '"kafka_addr":"[^"]*"' "$work/ferry.log" | head -1 | cut -d'"' -f4 || true)
	[ -n "$addr" ] && break
	sleep 0.1
done
if [ -z "$addr" ]; then
	echo "ferry did not report its Kafka address; log:" >&2
	cat "$work/ferry.log" >&2
	exit 1
fi
echo "franz-go $version pkg/kgo against ferry at $addr (skip: $skip)"
cd "$work/franz-go/pkg/kgo"
KGO_SEEDS=$addr KGO_TEST_RF=1 KGO_TEST_RECORDS=${KGO_TEST_RECORDS:-20000} \
	go test -count=1 -timeout 15m -run "$run" -skip "$skip" .
