package container

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExec runs commands in a live container the way Kata's agent runs an
// exec: they see the container's hostname, files, pid namespace and mount
// table, start in /, and their exit codes come back.
func TestExec(t *testing.T) {
	f := newFixture(t, sleepWorkload(t))
	c := f.start(t, Spec{Args: []string{"sh", "-c", "echo inside > /tmp/marker; exec sleep 3600"}, Setsid: true, Hostname: "exec-test"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p := Probe{PID: c.PID()}
	if err := p.poll(ctx, "wait for the marker", func() error {
		if _, err := p.ReadFile("/tmp/marker"); err != nil {
			return notYet("no marker")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"namespaces and root", []string{"sh", "-c", "hostname; cat /tmp/marker; pwd; echo pid=$$; grep -c . /proc/self/mountinfo"}, 0,
			[]string{"exec-test\n", "inside\n", "/\n", "pid="}},
		{"exit code", []string{"sh", "-c", "echo failing >&2; exit 3"}, 3, []string{"failing"}},
		{"argv kept whole", []string{"busybox", "echo", "a  b", "c"}, 0, []string{"a  b c\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Exec(ctx, c.PID(), ExecSpec{Args: tt.args})
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			out := string(r.Output)
			if r.Status.Code != tt.code {
				t.Errorf("exit code %d, want %d (output %q)", r.Status.Code, tt.code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
			if tt.name == "namespaces and root" {
				// Its pid is one of the container's pid namespace, and
				// its mount table is the container's.
				pid := out[strings.Index(out, "pid=")+4:]
				pid = pid[:strings.Index(pid, "\n")]
				if n, _ := strconv.Atoi(pid); n < 2 || n > 50 {
					t.Errorf("the exec's pid %s is not one of the container's pid namespace", pid)
				}
				mi, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.PID()), "mountinfo"))
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Count(string(mi), "\n")
				if !strings.HasSuffix(out, strconv.Itoa(lines)+"\n") {
					t.Errorf("the exec sees another mount table: %q, the container has %d mounts", out, lines)
				}
			}
		})
	}
	if _, err := Exec(ctx, c.PID(), ExecSpec{Args: []string{"no-such-probe"}}); err == nil || !strings.Contains(err.Error(), `command "no-such-probe": not found`) {
		t.Errorf("Exec of a missing command: %v", err)
	}
	// This process's own namespaces are untouched.
	if host, _ := os.Hostname(); host == "exec-test" {
		t.Error("the exec changed the launcher's hostname")
	}
	if _, err := os.Stat("/tmp/marker"); err == nil {
		t.Error("the launcher sees the container's /tmp")
	}
	assertNoZombies(t)
}
