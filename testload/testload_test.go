package testload

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

func TestMain(m *testing.M) {
	container.Init()
	// The test binary is each container's kata-cr-testload.
	if Invoked(os.Args[0]) {
		os.Exit(Main(os.Args, os.Stderr))
	}
	os.Exit(m.Run())
}

// workloads lists the registered workloads that run a testload mode.
func workloads(t *testing.T) []container.Workload {
	t.Helper()
	var out []container.Workload
	for _, w := range container.Workloads {
		if len(w.Args) > 1 && w.Args[0] == Path {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		t.Fatal("no testload workload is registered")
	}
	return out
}

// start runs w in a real container whose kata-cr-testload is this test
// binary, and waits until it is ready.
func start(t *testing.T, w container.Workload) container.Probe {
	t.Helper()
	return startWith(t, w, nil)
}

// startWith is start with volumes bound into the container (a pod's).
func startWith(t *testing.T, w container.Workload, volumes []container.BindMount) container.Probe {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("containers need root (namespaces, mounts): run the tests as root")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	rootfs := filepath.Join(base, "rootfs")
	if err := container.PrepareWorkload(rootfs, w, map[string]string{Path: self}); err != nil {
		t.Fatalf("PrepareWorkload: %v", err)
	}
	sb, err := container.PrepareSandbox(filepath.Join(base, "sandbox"), "kata-cr-test")
	if err != nil {
		t.Fatal(err)
	}
	sb.Volumes = volumes
	spec := container.Spec{Rootfs: rootfs, Sandbox: sb, Args: w.Args, Setsid: true}
	if w.Resources != nil {
		// Limits need a cgroup v2 of the test's own.
		root := t.TempDir()
		if err := unix.Mount("cgroup2", root, "cgroup2", 0, ""); err != nil {
			t.Fatalf("mount cgroup2 for the test: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(root, unix.MNT_DETACH) })
		ctrl, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if !strings.Contains(string(ctrl), "memory") || !strings.Contains(string(ctrl), "pids") {
			// A cgroup v1 host: the corpus (TestCorpus) runs this
			// workload in a guest with cgroup v2 and its limits.
			t.Skipf("this host's cgroup v2 has no memory and pids controllers (%q): the limits need a cgroup v2 host or the guest", strings.TrimSpace(string(ctrl)))
		}
		spec.ID, spec.Resources, spec.CgroupRoot = w.Name, w.Resources, root
	}
	c, err := container.Start(spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Kill(); err != nil {
			t.Errorf("Kill: %v", err)
		}
	})
	p := container.Probe{PID: c.PID()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Ready(ctx, p); err != nil {
		t.Fatalf("%s: Ready: %v", w.Name, err)
	}
	return p
}

// observed are state keys the prober reads from outside, by workload.
var observed = map[string]container.State{
	"zombie": {KeyZombies: "1"},
	"vfork":  {KeyVforkState: "D"},
}

// TestWorkloadsLive runs every testload workload in a real container: it
// gets ready, and its Verify accepts the live process it snapshotted (the
// heartbeat moves on, the scenario's own state is there) and refuses a
// snapshot of another run (what a restarted workload looks like).
func TestWorkloadsLive(t *testing.T) {
	for _, w := range workloads(t) {
		t.Run(w.Name, func(t *testing.T) {
			if podWorkloads[w.Name] {
				t.Skip("a pod's container: TestPodWorkloadsLive runs it beside its peer")
			}
			p := start(t, w)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, err := w.Snapshot(ctx, p)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			for k, v := range observed[w.Name] {
				if st[k] != v {
					t.Errorf("snapshot %s=%q, want %q: %v", k, st[k], v, st)
				}
			}
			msg, err := w.Verify(ctx, p, st)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			t.Logf("%s: %s", w.Name, msg)
			other := container.State{}
			for k, v := range st {
				other[k] = v
			}
			other[KeyRun] = "0000000000000000"
			if _, err := w.Verify(ctx, p, other); err == nil || !strings.Contains(err.Error(), "started afresh") {
				t.Errorf("Verify against another run = %v, want started afresh", err)
			}
		})
	}
}

func TestMainUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
		out  string
	}{
		{"no mode", []string{Name}, 2, "usage: " + Name},
		{"unknown mode", []string{Name, "nope"}, 2, `unknown mode "nope"`},
		{"exit", []string{Name, ModeExit}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := Main(tc.args, &out); got != tc.want {
				t.Errorf("Main(%q) = %d, want %d", tc.args, got, tc.want)
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("Main(%q) printed %q, want %q", tc.args, out.String(), tc.out)
			}
		})
	}
}

func TestInvoked(t *testing.T) {
	for _, tc := range []struct {
		argv0 string
		want  bool
	}{
		{Path, true}, {Name, true}, {"/bin/uinit", false}, {"kata-cr-agent", false},
	} {
		if got := Invoked(tc.argv0); got != tc.want {
			t.Errorf("Invoked(%q) = %v, want %v", tc.argv0, got, tc.want)
		}
	}
}

func TestParseState(t *testing.T) {
	for _, tc := range []struct {
		name, data, err string
	}{
		{"ok", `{"mode":"zombie","run":"ab","ready":"yes"}`, ""},
		{"no run", `{"mode":"zombie"}`, "no mode or run"},
		{"not json", `mode=zombie`, "parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseState([]byte(tc.data))
			if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("ParseState(%q) = %v, want %q", tc.data, err, tc.err)
			}
		})
	}
}
