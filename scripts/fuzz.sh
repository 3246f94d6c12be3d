#!/usr/bin/env bash
# fuzz.sh: run every Fuzz target of every package for FUZZTIME (go test
# -fuzz takes one target of one package at a time). A crasher fails the
# run, and go test writes it to the package's testdata/fuzz. Go's fuzzer
# sometimes ends a clean run with "context deadline exceeded" when the
# time runs out while a worker is busy (no input failed): such a run is
# tried once more, and fails only when it happens again.
set -euo pipefail
go=${GO:-go}
fuzztime=${FUZZTIME:-15s}
for pkg in $("$go" list ./...); do
	for target in $("$go" test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		for try in 1 2; do
			echo "fuzz $pkg $target ($fuzztime)"
			out=$(mktemp)
			if "$go" test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" "$pkg" >"$out" 2>&1; then
				cat "$out"
				rm -f "$out"
				break
			fi
			cat "$out"
			if [[ $try == 1 ]] && grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
				rm -f "$out"
				echo "fuzz $pkg $target: the fuzzer ran out of time while a worker was busy, no input failed: once more"
				continue
			fi
			rm -f "$out"
			exit 1
		done
	done
done
