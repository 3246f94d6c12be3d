package container

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/images"
)

// runWorkload prepares, starts and readies w, and returns the container.
func runWorkload(t *testing.T, w Workload) (fixture, *Container, Probe) {
	t.Helper()
	f := newFixture(t, w)
	c := f.start(t, Spec{Args: w.Args, Terminal: w.Terminal, Setsid: true})
	p := Probe{PID: c.PID()}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.Ready(ctx, p); err != nil {
		t.Fatalf("%s: Ready: %v", w.Name, err)
	}
	return f, c, p
}

// TestWorkloadsLive runs every named workload in a real container and
// checks that its Verify accepts the live workload it snapshotted: the
// probes read real state. (The restored side runs in the guest.)
func TestWorkloadsLive(t *testing.T) {
	for _, w := range Workloads {
		if w.CallsSetsid {
			// It never stays up: TestSeedFixInit.
			continue
		}
		t.Run(w.Name, func(t *testing.T) {
			_, _, p := runWorkload(t, w)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, err := w.Snapshot(ctx, p)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			msg, err := w.Verify(ctx, p, st)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			t.Logf("%s: %s", w.Name, msg)
		})
	}
}

// TestVerifyNegative proves the verifications are not vacuous: a workload
// started afresh (what a lost restore would look like) fails them.
func TestVerifyNegative(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t.Run("counter restarted", func(t *testing.T) {
		w, _ := Lookup("counter")
		_, _, p := runWorkload(t, w)
		st, err := w.Snapshot(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		// A dump taken later than this fresh start.
		st["counter"] = "100000"
		_, err = w.Verify(ctx, p, st)
		if err == nil || !strings.Contains(err.Error(), "the counter restarted") {
			t.Errorf("Verify of a counter below the dumped value = %v", err)
		}
	})
	t.Run("redis lost its key", func(t *testing.T) {
		w, _ := Lookup("redis")
		_, _, p := runWorkload(t, w)
		_, err := w.Verify(ctx, p, State{"key": "kata-cr:probe", "value": "0123"})
		if err == nil || !strings.Contains(err.Error(), "lost the key") {
			t.Errorf("Verify of a fresh redis = %v", err)
		}
	})
	t.Run("lock not held", func(t *testing.T) {
		w, _ := Lookup("flock")
		sleep, _ := Lookup("sleep")
		f := newFixture(t, w)
		c := f.start(t, Spec{Args: sleep.Args, Setsid: true})
		p := Probe{PID: c.PID()}
		if err := os.WriteFile(filepath.Join(f.rootfs, lockFile), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := w.Verify(ctx, p, State{})
		if err == nil || !strings.Contains(err.Error(), "does not hold its lock") {
			t.Errorf("Verify without a lock = %v", err)
		}
	})
	t.Run("other command", func(t *testing.T) {
		w, _ := Lookup("sleep")
		_, _, p := runWorkload(t, w)
		_, err := w.Verify(ctx, p, State{"cmdline": "busybox\x00sleep\x0042"})
		if err == nil || !strings.Contains(err.Error(), "not \"busybox sleep 42\"") {
			t.Errorf("Verify of another command = %v", err)
		}
	})
}

// TestSeedFixInit records what the seed's proposed fix does as pid 1: sh
// execs setsid, setsid() refuses pid 1 (it leads its process group), so
// setsid forks and pid 1 exits at once, with or without Spec.Setsid.
func TestSeedFixInit(t *testing.T) {
	w, _ := Lookup("seed-fix")
	f := newFixture(t, w)
	for _, setsid := range []bool{false, true} {
		c := f.start(t, Spec{Args: w.Args, Setsid: setsid})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := c.Wait(ctx)
		cancel()
		if err != nil || st.Code != 0 || st.Signal != 0 {
			t.Errorf("setsid=%v: the init should exit 0 right after setsid forked: %v %v", setsid, st, err)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		err = w.Ready(rctx, Probe{PID: c.PID()})
		rcancel()
		if err == nil || !strings.Contains(err.Error(), "is gone") {
			t.Errorf("setsid=%v: Ready = %v, want the init gone", setsid, err)
		}
	}
}

func TestRootfsDiff(t *testing.T) {
	w := Command([]string{"sh", "-c", "rm /etc/group; mkdir -p /var/lib/app; echo state > /var/lib/app/data; ln -s data /var/lib/app/link; exec sleep 3600"})
	f := newFixture(t, w)
	base, err := TakeBaseline(f.rootfs)
	if err != nil {
		t.Fatal(err)
	}
	c := f.start(t, Spec{Args: w.Args, Setsid: true})
	p := Probe{PID: c.PID()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.poll(ctx, "wait for the workload's files", func() error {
		if _, err := os.Lstat(filepath.Join(f.rootfs, "var/lib/app/link")); err != nil {
			return notYet("no link yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := base.Diff(f.rootfs)
	if err != nil {
		t.Fatal(err)
	}
	wantChanged := []string{"var/lib/app", "var/lib/app/data", "var/lib/app/link"}
	if strings.Join(d.Changed, ",") != strings.Join(wantChanged, ",") {
		t.Errorf("Changed = %q, want %q", d.Changed, wantChanged)
	}
	if strings.Join(d.Deleted, ",") != "etc/group" {
		t.Errorf("Deleted = %q, want etc/group", d.Deleted)
	}
	// Nothing the sandbox bind-mounted shows up: the launcher sees the
	// rootfs without the container's mounts.
	for _, p := range d.Changed {
		if strings.HasPrefix(p, "dev") || strings.HasPrefix(p, "proc") || strings.HasPrefix(p, "etc/hosts") {
			t.Errorf("%s in the diff", p)
		}
	}

	imgDir := t.TempDir()
	if err := WriteRootfsDiff(imgDir, f.rootfs, d); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(t.TempDir(), "rootfs")
	if err := PrepareWorkload(fresh, w, nil); err != nil {
		t.Fatal(err)
	}
	if err := ApplyRootfsDiff(imgDir, fresh); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(fresh, "var/lib/app/data")); err != nil || !bytes.Equal(data, []byte("state\n")) {
		t.Errorf("data after apply: %q %v", data, err)
	}
	if l, err := os.Readlink(filepath.Join(fresh, "var/lib/app/link")); err != nil || l != "data" {
		t.Errorf("link after apply: %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(fresh, "etc/group")); !os.IsNotExist(err) {
		t.Errorf("etc/group survived the apply: %v", err)
	}
	// The diff's files are valid members of an images directory (with
	// stand-ins for the CRIU images a checkpoint must hold).
	for _, name := range []string{"inventory.img", "pstree.img"} {
		if err := os.WriteFile(filepath.Join(imgDir, name), []byte("stand-in"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := images.Write(filepath.Join(t.TempDir(), "ckpt"), images.Manifest{}, images.FromDir(imgDir))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Manifest.Files) != 4 {
		t.Errorf("images files %+v", s.Manifest.Files)
	}
}

func TestApplyRootfsDiffRefusesEscape(t *testing.T) {
	dir := t.TempDir()
	rootfs := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(rootfs, victim)
	if err := os.WriteFile(filepath.Join(dir, images.DeletedFilesName), []byte(`["`+rel+`"]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ApplyRootfsDiff(dir, rootfs); err == nil {
		t.Error("a deleted path outside the rootfs was accepted")
	}
	if _, err := os.Stat(victim); err != nil {
		t.Errorf("the file outside the rootfs was deleted: %v", err)
	}
}

func TestLookupWorkload(t *testing.T) {
	tests := []struct {
		name     string
		workload string
		command  []string
		want     string   // the workload's name
		wantArgs []string // checked when not nil
		wantErr  string
	}{
		{name: "nothing named: the default", want: DefaultWorkload},
		{name: "a named workload", workload: "redis", want: "redis"},
		{name: "a command after --", command: []string{"sleep", "100"}, want: CommandWorkload, wantArgs: []string{"sleep", "100"}},
		{name: "a manifest's command workload", workload: CommandWorkload, command: []string{"/bin/app", "-x"}, want: CommandWorkload, wantArgs: []string{"/bin/app", "-x"}},
		{name: "a manifest's named workload with its argv", workload: "counter", command: []string{"/bin/sh", "-c", "loop"}, want: "counter"},
		{name: "unknown name", workload: "nope", wantErr: `unknown workload "nope"`},
		{name: "command workload without a command", workload: CommandWorkload, wantErr: `unknown workload "command"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := LookupWorkload(tt.workload, tt.command)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.Name != tt.want {
				t.Errorf("workload %q, want %q", w.Name, tt.want)
			}
			if tt.wantArgs != nil && strings.Join(w.Args, " ") != strings.Join(tt.wantArgs, " ") {
				t.Errorf("args %q, want %q", w.Args, tt.wantArgs)
			}
		})
	}
}
