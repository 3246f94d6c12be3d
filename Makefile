# kata-cr: build, test, lint, benchmark and fuzz.
# `make deps` and `make guest-kernel` need root on Debian 12; see README.md.

GO       ?= go
BIN      := bin/kata-cr
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/kata-cr/kata-cr/cmd.Version=$(VERSION)
# Debian kernel series for `make guest-kernel`: 6.1, 6.12 or 7.3.
KERNEL   ?= 6.1
# Iterations per benchmark: the VM benchmarks boot a guest per iteration.
BENCHTIME ?= 3x
# How long each Fuzz target runs in `make fuzz`.
FUZZTIME ?= 15s

.PHONY: all build test test-unit lint bench fuzz deps guest-kernel guest-kernels corpus-truth clean

all: build

# A static binary: it runs on the host and is copied into guest images.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/kata-cr

# The full suite (README, .ci/run). Real guest boots included.
test:
	$(GO) test -count=1 -timeout 55m ./...

# The fast tests: -short skips every test that boots a guest (and the
# mmdebstrap build of the trixie rootfs); no qemu needed.
test-unit:
	$(GO) test -short -count=1 ./...

# gofmt, go vet, staticcheck and actionlint (pinned in go.mod as tools:
# nothing to install) and a go.mod/go.sum that go mod tidy would not change.
lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) tool actionlint examples/github-actions/kata-cr-gate.yml
	$(GO) mod tidy -diff

# The corpus benchmark runs each cell once: the whole corpus, two boots.
# The gate benchmark runs the default gate (the corpus in its three cells)
# once with -j 1 and once with -j 2.
# The checkpoint benchmarks (README, Performance) print each target's ratio
# against its floor measured in the same iteration: downtime, end to end,
# restore, --pre-dump 2's freeze; PERFTIME iterations each.
PERF     := BenchmarkCheckpointCounter|BenchmarkCheckpointOverlap|BenchmarkPreDumpHeap
PERFTIME ?= 3x
bench:
	$(GO) test -run '^$$' -bench . -skip 'BenchmarkCorpus|BenchmarkGate|$(PERF)' -benchtime $(BENCHTIME) -timeout 40m ./...
	$(GO) test -run '^$$' -bench '$(PERF)' -benchtime $(PERFTIME) -timeout 60m ./cmd
	$(GO) test -run '^$$' -bench BenchmarkCorpus -benchtime 1x -timeout 60m ./cmd
	$(GO) test -run '^$$' -bench BenchmarkGate -benchtime 1x -timeout 120m ./cmd

# Runs every Fuzz target of every package for FUZZTIME (scripts/fuzz.sh).
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Runs the corpus in its three cells and rewrites the truth table in
# docs/corpus-truth.md and README.md (make test checks both against a run).
corpus-truth: build
	scripts/corpus-truth.sh

deps:
	scripts/install-deps.sh

guest-kernel:
	scripts/fetch-kernel.sh $(KERNEL)

# The kernels the tests boot: Debian's 6.1 (the default guest) and 7.3 (newer
# than 6.13: the CRIU 4.1 vDSO case), and Kata's guest kernel built from the
# fixture fragments on Debian's linux-source-6.12, with kata-cr's CRIU
# fragment and stock (kata-cr kernel build caches both: once per machine,
# about 14 minutes each on 2 CPUs; nothing to do the next time).
KATA_FRAGMENTS := kernel/testdata/kata-fragments
guest-kernels:
	scripts/fetch-kernel.sh 6.1
	scripts/fetch-kernel.sh 7.3
	scripts/fetch-kernel.sh source 6.12
	$(MAKE) build
	$(BIN) kernel build --fragments $(KATA_FRAGMENTS) --source 6.12 --arch x86_64
	$(BIN) kernel build --fragments $(KATA_FRAGMENTS) --source 6.12 --arch x86_64 --stock

clean:
	rm -rf bin
