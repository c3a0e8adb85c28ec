# mqstreams: MQTT in, durable streams, Kafka wire protocol out.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run run-cluster test test-deps lint bench bench-quick bench-deps bench-go clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/mqstreams ./cmd/mqstreams

run: build
	./bin/mqstreams serve

# run-cluster starts three nodes on loopback as one cluster: Kafka 9092-9094, MQTT
# 1883-1885, HTTP 8080-8082, data under ./data-cluster/; Ctrl-C stops all three.
run-cluster: build
	./scripts/run-cluster.sh bin/mqstreams

# test installs what the compat tests need (Debian packages, npm modules) and runs
# every test of the three modules: the product's, compat-tests/ (real clients against a
# real server process; its own go.mod keeps those clients out of the product's) and
# bench/.
test: test-deps build
	$(GO) test -race -timeout 15m ./...
	# -count=1: the compat tests run the binary TestMain builds from ../, which go test's
	# cache does not see, so a cached pass could be of older product code.
	cd compat-tests && $(GO) test -race -count=1 -timeout 15m ./...
	cd bench && $(GO) test -race ./...

test-deps:
	@./compat-tests/install-deps.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	cd compat-tests && $(GO) vet ./...
	cd bench && $(GO) vet ./...

# bench runs mqstreams side by side with Mosquitto, mochi-mqtt and kfake (cmd/mqbench in
# the bench module, which keeps gonum/plot out of the product's go.mod) and writes
# BENCHMARKS.md, bench/results.json and bench/*.png. Under 20 minutes.
bench: build bench-deps
	cd bench && $(GO) run ./cmd/mqbench -bin ../bin/mqstreams -out . -md ../BENCHMARKS.md

# bench-quick is the same program at small sizes (under 2 minutes, no thresholds): a CI
# smoke test writing to a temporary directory, not to the repository.
BENCH_QUICK_OUT ?= $(or $(TMPDIR),/tmp)/mqbench-quick
bench-quick: build bench-deps
	cd bench && $(GO) run ./cmd/mqbench -quick -bin ../bin/mqstreams -out $(BENCH_QUICK_OUT) -md $(BENCH_QUICK_OUT)/BENCHMARKS.md

bench-deps:
	@./bench/install-deps.sh

# bench-go runs the Go micro-benchmarks of the log, MQTT and Kafka paths.
bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./log/ ./mqtt/ ./kafkawire/
	# The same records replayed in process from the server and from kfake (bench module).
	cd bench && $(GO) test -run '^$$' -bench ReplayVsKfake -benchtime 3x ./inprocess/
	# Replay of MQTT-ingested records through the binary against kfake (issue 16): each
	# iteration times both, so read the ratios (time-vs-kfake), not the absolute figures.
	cd compat-tests && $(GO) test -run '^$$' -bench KafkaReplayMQTT -benchtime 3x -v .
	# Kafka produce → MQTT subscriber latency at 1,000 and 10,000 records/s (issue 11).
	cd compat-tests && $(GO) test -run '^$$' -bench KafkaToMQTTLatency -benchtime 1x -v .
	# Cluster leader failover: SIGKILL the leader 20 times, time until writable again (issue 13).
	cd compat-tests && $(GO) test -run '^$$' -bench ClusterFailover -benchtime 1x -timeout 20m -v .

clean:
	rm -rf bin
