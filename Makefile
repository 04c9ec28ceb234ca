# ferry — the two commands a newcomer needs are `make run` and `make test`.

GO        ?= go
BIN       := bin/ferry
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
GOFLAGS_B := -trimpath -ldflags '$(LDFLAGS)'

.PHONY: all build run run-edge run-full test deps deps-ops fmt-check vet cross cross-test dist dist-test bench bench-quick bench-peers fuzz torture conformance conformance-ci clean

all: build

## build: the ferry binary for this machine, static, in bin/
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_B) -o $(BIN) ./cmd/ferry

## run: an edge broker on embedded defaults (data in ./data, admin on 127.0.0.1:8080, Kafka on :9092, MQTT on :1883)
run: build
	./$(BIN) edge --data-dir ./data --admin-addr 127.0.0.1:8080

## run-full: a center from configs/full.yaml on this machine (Kafka on :19092, admin on 127.0.0.1:18080, mirror receiver on :9393 with mutual TLS, data in ./center)
run-full: build certs/ca.pem
	./$(BIN) full --config configs/full.yaml

## run-edge: an edge from configs/edge.yaml (the default ports, data in ./data), mirroring as gw1 to the center of run-full over mutual TLS
run-edge: build certs/ca.pem
	./$(BIN) edge --config configs/edge.yaml

# The example configs' certificates, for trying TLS out: a CA, the node's
# certificate for this machine, gw1's client certificate (ferry certs).
certs/ca.pem: | build
	./$(BIN) certs init --dir certs
	./$(BIN) certs node --dir certs --host localhost,127.0.0.1
	./$(BIN) certs edge gw1 --dir certs

## test: install what the tests need, then gofmt check, vet, every test with -race, and each fuzz target briefly
test: deps fmt-check vet
	$(GO) test -race -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_BRIEF)

# deps installs the tools the tests use when they are missing: kcat,
# mosquitto clients, the mosquitto broker (bridge-in
# tests, MQTT benchmarks), Node.js (end-to-end tests with clients we did
# not write) and Chromium (the status page test, headless) from Debian,
# kafkajs from npm, and those of deps-ops. As root it uses apt-get;
# otherwise it says what to install.
deps: deps-ops
	@missing=""; \
	command -v kcat >/dev/null 2>&1 || missing="$$missing kcat"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	command -v mosquitto_pub >/dev/null 2>&1 || missing="$$missing mosquitto-clients"; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; \
		fi; \
	fi
	@# kafkajs for the tutorial test, pinned by testbed/kafkajs/package-lock.json
	@[ -d testbed/kafkajs/node_modules/kafkajs ] || (cd testbed/kafkajs && npm ci --no-audit --no-fund --loglevel=error)

# deps-ops installs what the packaging and monitoring tests use: dpkg and
# sha256sum (on every Debian), systemd-analyze (systemd), the CA bundle the
# image carries (ca-certificates) and promtool (prometheus, without its
# recommends: the tool, not a monitoring stack). No browser, no npm.
deps-ops:
	@missing=""; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	[ -f /etc/ssl/certs/ca-certificates.crt ] || missing="$$missing ca-certificates"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		else \
			echo "missing Debian packages:$$missing (sudo apt-get install --no-install-recommends$$missing)"; exit 1; \
		fi; \
	fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## cross: static ferry binaries for every release target (linux amd64, arm64, armv7, armv6, riscv64, mipsle) in dist/; builds only
CROSS_TARGETS := amd64:amd64: arm64:arm64: armv7:arm:GOARM=7 armv6:arm:GOARM=6 riscv64:riscv64: mipsle:mipsle:GOMIPS=softfloat
cross:
	mkdir -p dist
	@for t in $(CROSS_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; arch=$${rest%%:*}; extra=$${rest#*:}; \
		echo "== linux/$$name"; \
		env CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $$extra $(GO) build $(GOFLAGS_B) -o dist/ferry-linux-$$name ./cmd/ferry || exit 1; \
	done
	@ls -l dist/

## cross-test: the log tests on arm64 under qemu-user (installed when missing, as root).
# The crash tests re-execute the test binary as a child process, which
# qemu-user cannot do without binfmt_misc (absent in containers), so the
# emulated run skips them; they run natively in `make test`.
cross-test:
	@command -v qemu-aarch64 >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user >/dev/null)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) test -exec qemu-aarch64 -count=1 -skip 'TestCrash' ./log/

## dist: release artifacts in dist/: static binaries for every target, .deb and .rpm packages (systemd unit, /etc/ferry/ferry.yaml), an OCI image tarball, SHA256SUMS (cmd/ferry-dist, its own module: nfpm and go-containerregistry stay out of the ferry binary)
dist:
	$(GO) -C cmd/ferry-dist run . -root $(CURDIR) -out $(CURDIR)/dist -version $(VERSION)

## dist-test: the packaging tests for this machine's architecture only: the .deb installed with dpkg -i (in CI, as root), the unit through systemd-analyze verify, the image read back and its binary run
dist-test: deps-ops
	$(GO) -C cmd/ferry-dist vet .
	$(GO) -C cmd/ferry-dist test -race -count=1 -timeout 15m .

## bench: every benchmark with its peers measured in the same run (dd and loopback TCP by benchreport, nats-server JetStream, mosquitto), progress as it goes; writes testbed/BENCHMARKS-generated.md and testbed/charts/*.svg (testbed/cmd/benchreport); then the pipeline scenarios at full size
BENCH_DIR ?= $(CURDIR)/.bench
bench: bench-peers
	BENCH_DIR=$(BENCH_DIR) $(GO) run ./testbed/cmd/benchreport
	@# The pipeline scenarios (testbed/scenarios) at full size, one after the other (about 45 min).
	FERRY_SCENARIO_SIZE=full $(GO) test -run '^TestScenarios$$' -v -timeout 150m ./testbed

## bench-quick: the same report from fewer, shorter cases (a few minutes), in testbed/out/bench-quick/ (not committed): a smoke test of the benchmarks and the report
BENCH_QUICK_OUT ?= $(CURDIR)/testbed/out/bench-quick
bench-quick: bench-peers
	BENCH_QUICK=1 BENCH_DIR=$(BENCH_DIR) $(GO) run ./testbed/cmd/benchreport -out $(BENCH_QUICK_OUT)

# The peers the benchmarks start themselves, installed when missing (as root).
bench-peers:
	@command -v nats-server >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null)
	@[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null)

## conformance: franz-go's own pkg/kgo integration suite against a real ferry (see docs/conformance.md)
conformance:
	bash testbed/conformance/kgo.sh

# The subset CI runs: the suite's produce, consume, group and admin paths (~1 min).
KGO_CI_SUBSET := TestGroupETL|TestGroupSimple|TestConsumeTopicRetrieval$$|TestIssue325|TestAddRemovePartitions|TestLookbackMilli|TestPing|TestDirectPartitionPurge
conformance-ci:
	KGO_RUN='$(KGO_CI_SUBSET)' bash testbed/conformance/kgo.sh

## torture: the torture suite at full size (20 kill -9 cycles under mixed load, a 10-minute soak, ...; about 15 min)
torture: deps
	FERRY_TORTURE=full $(GO) test -run '^(TestTorture|TestJepsen)' -v -timeout 90m ./testbed

## fuzz: each fuzz target for a while (FUZZTIME per target; make test runs each for FUZZTIME_BRIEF)
FUZZTIME ?= 60s
FUZZTIME_BRIEF ?= 3s
FUZZ_PKGS := ./log/ ./ingest/kafka/ ./ingest/mqtt/ ./devices/ ./mirror/wire/ ./configs/
# Go 1.26's fuzz coordinator can fail a target with a bare "context
# deadline exceeded" as -fuzztime ends under CPU load, with no failing
# input (golang/go#75804, fixed in Go 1.27). Such a run is reported and
# not counted; any other failure, or any new input written under
# testdata/fuzz, fails the rule.
fuzz:
	@out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for pkg in $(FUZZ_PKGS); do \
		for t in $$($(GO) test -list 'Fuzz.*' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$t ($(FUZZTIME))"; \
			if $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 100x $$pkg >$$out 2>&1; then cat $$out; continue; fi; \
			cat $$out; \
			if grep -q '^    context deadline exceeded$$' $$out && [ "$$(grep -c '^    ' $$out)" = 1 ] && [ -z "$$(git status --porcelain -- $$pkg/testdata/fuzz/$$t)" ]; then \
				echo "== $$t: Go's fuzz-deadline race (golang/go#75804), no failing input: not counted"; \
			else exit 1; fi; \
		done; \
	done

clean:
	rm -rf bin dist .bench
