package criu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestFirstCheckRunsAlone: of checks started together, the first runs
// alone (it leaves CRIU's kernel probe cache for the others), the others
// then run at once; after the cache is forgotten the next first runs alone
// again. The fake criu records when each run starts and ends.
func TestFirstCheckRunsAlone(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace")
	script := fmt.Sprintf(`#!/bin/sh
log=; prev=
for a; do [ "$prev" = --log-file ] && log=$a; prev=$a; done
echo "start $$" >> %[1]s
sleep 0.5
echo "$3 is supported" > "$log"
echo "end $$" >> %[1]s
`, trace)
	fake := filepath.Join(dir, "criu")
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBinary(fake)
	for round := range 2 {
		kdatWarm.Lock()
		kdatWarm.done = false
		kdatWarm.Unlock()
		if err := os.WriteFile(trace, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, name := range []string{"a", "b", "c"} {
			wg.Go(func() {
				if ok, _, err := b.Feature(context.Background(), name); !ok || err != nil {
					t.Errorf("round %d: feature %s: %v %v", round, name, ok, err)
				}
			})
		}
		wg.Wait()
		data, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Fields(strings.ReplaceAll(string(data), "\n", " "))
		// Pairs of words: start PID, end PID.
		if len(lines) != 12 {
			t.Fatalf("round %d: trace %q: want 6 events", round, data)
		}
		first := lines[1]
		if lines[0] != "start" || lines[2] != "end" || lines[3] != first {
			t.Errorf("round %d: trace %q: the first run did not end before the next started", round, data)
		}
		// The other two overlap: both start before either ends.
		if lines[4] != "start" || lines[6] != "start" {
			t.Errorf("round %d: trace %q: the runs after the first did not run at once", round, data)
		}
	}
}
