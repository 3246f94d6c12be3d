package testload

import (
	"context"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// podWorkloads need the other container of their pod.
var podWorkloads = map[string]bool{"pod-server": true, "pod-client": true}

// TestPodWorkloadsLive runs the pod's server and sidecar in two real
// containers that share a volume: both get ready, and each one's Verify
// accepts it carrying on (the sidecar's answers and the server's count
// move on over the one connection).
func TestPodWorkloadsLive(t *testing.T) {
	vol := []container.BindMount{{Source: t.TempDir(), Target: PodVolume, Key: "pod", Dir: true}}
	var probes []container.Probe
	var ws []container.Workload
	for _, name := range []string{"pod-server", "pod-client"} {
		w, err := container.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		probes, ws = append(probes, startWith(t, w, vol)), append(ws, w)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, w := range ws {
		st, err := w.Snapshot(ctx, probes[i])
		if err != nil {
			t.Fatalf("%s: Snapshot: %v", w.Name, err)
		}
		msg, err := w.Verify(ctx, probes[i], st)
		if err != nil {
			t.Fatalf("%s: Verify: %v", w.Name, err)
		}
		t.Logf("%s: %s", w.Name, msg)
	}
}
