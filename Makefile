# mqstreams: MQTT in, durable streams, Kafka wire protocol out.
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build run test test-deps lint bench clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/mqstreams ./cmd/mqstreams

run: build
	./bin/mqstreams serve

# test installs what the compat tests need (Debian packages, npm modules) and runs
# every test, the compat tests against a real server process included.
test: test-deps build
	$(GO) test -race -timeout 15m ./...

test-deps:
	@./compat-tests/install-deps.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./log/ ./mqtt/ ./kafkawire/
	# Replay of MQTT-ingested records through the binary against kfake (issue 16): each
	# iteration times both, so read the ratios (time-vs-kfake), not the absolute figures.
	$(GO) test -run '^$$' -bench KafkaReplayMQTT -benchtime 3x -v ./compat-tests/

clean:
	rm -rf bin
