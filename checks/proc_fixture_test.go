package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/procfs"

	"github.com/kata-cr/kata-cr/reports"
)

// The golden files are rewritten with `go test ./checks -update`. Another
// test file of the package may define the flag too; only one may.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
}

func procUpdate() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// procFixtureEnv points the checks at a fixture /proc tree. The path is
// relative so that evidence does not depend on where the repository is.
func procFixtureEnv(t *testing.T, dir string, pid int) *Env {
	t.Helper()
	root := filepath.Join("testdata", dir)
	fs, err := procfs.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{ProcRoot: root, Proc: fs, PID: pid}
}

func TestProcFixtures(t *testing.T) {
	type want map[string][]reports.Status
	F, P, W, S := reports.Fail, reports.Pass, reports.Warn, reports.Skip
	tests := []struct {
		dir  string
		pid  int
		want want
		// dump is Predict's verdict, with and without CRIU options.
		dump, withOptions bool
	}{
		{dir: "proc-seed", pid: 100, want: want{
			"process.pidns":            {P},
			"process.session-leader":   {F},
			"process.tty":              {F},
			"process.file-locks":       {F},
			"process.unix-sockets":     {S},
			"process.tcp":              {F},
			"process.udp-cork":         {P},
			"process.socket-protocols": {S},
			"process.unix-queued":      {S},
			"process.link-remap":       {S},
			"process.inotify":          {W},
			"process.fanotify":         {P},
			"process.ptrace":           {P},
			"process.userns":           {P},
			"process.fd-mounts":        {F},
			"process.files":            {F},
			"process.ghost-files":      {W},
			"process.vfork":            {P},
			"criu.inet-sockets":        {S},
			"mount.external-bind":      {F, F, F, F},
			"mount.filesystems":        {F, F, W},
			"mount.tmpfs":              {S},
			"mount.masked-dirs":        {S},
		}},
		// The init is its own session leader; the tree is found without
		// children files, from every process's parent.
		{dir: "proc-setsid", pid: 200, dump: true, withOptions: true, want: want{
			"process.pidns":            {P},
			"process.session-leader":   {P},
			"process.tty":              {P},
			"process.file-locks":       {P},
			"process.unix-sockets":     {P},
			"process.tcp":              {P},
			"process.udp-cork":         {P},
			"process.socket-protocols": {P},
			"process.unix-queued":      {P},
			"process.link-remap":       {P},
			"process.inotify":          {P},
			"process.fanotify":         {P},
			"process.ptrace":           {P},
			"process.userns":           {P},
			"process.fd-mounts":        {P},
			"process.files":            {P},
			"process.ghost-files":      {P},
			"process.vfork":            {P},
			"criu.inet-sockets":        {S},
			"mount.external-bind":      {P},
			"mount.filesystems":        {P},
			"mount.tmpfs":              {P},
			"mount.masked-dirs":        {P},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			env := procFixtureEnv(t, tc.dir, tc.pid)
			fs := Runner{Checks: append(ProcessChecks(), MountChecks()...)}.Run(context.Background(), env)
			got := map[string][]reports.Status{}
			for _, f := range fs {
				got[f.ID] = append(got[f.ID], f.Status)
			}
			for id, w := range tc.want {
				if !slices.Equal(got[id], w) {
					t.Errorf("%s: got %v, want %v", id, got[id], w)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("got findings for %d checks, want %d", len(got), len(tc.want))
			}
			if p := Predict(fs); p.DumpWillSucceed != tc.dump || p.WithOptions != tc.withOptions {
				t.Errorf("Predict: %+v", p)
			}
			if t.Failed() {
				t.Logf("findings:\n%s", procDump(fs))
			}

			b, err := json.MarshalIndent(fs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, '\n')
			golden := filepath.Join("testdata", tc.dir, "findings.golden.json")
			if procUpdate() {
				if err := os.WriteFile(golden, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			w, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./checks -update)", err)
			}
			if !bytes.Equal(b, w) {
				t.Errorf("findings differ from %s (run go test ./checks -update and review the diff):\n%s", golden, b)
			}
		})
	}
}

func TestProcFixtureTree(t *testing.T) {
	tr, err := procLoadTree(procFixtureEnv(t, "proc-seed", 100))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range tr.Procs {
		pids = append(pids, p.PID)
	}
	if !slices.Equal(pids, []int{100, 101, 102}) {
		t.Errorf("tree %v, want 100 101 102", pids)
	}
	// 103 is listed as a child of 101 but has no directory: it exited
	// while the tree was read.
	if !slices.Equal(tr.Vanished, []string{"pid 103"}) {
		t.Errorf("vanished %v", tr.Vanished)
	}

	// Without children files (no CONFIG_PROC_CHILDREN) the tree comes from
	// a scan of every process's parent, and stops at the root.
	tr, err = procLoadTree(procFixtureEnv(t, "proc-setsid", 200))
	if err != nil {
		t.Fatal(err)
	}
	pids = nil
	for _, p := range tr.Procs {
		pids = append(pids, p.PID)
	}
	if !slices.Equal(pids, []int{200, 201}) {
		t.Errorf("tree %v, want 200 201", pids)
	}

	_, err = procLoadTree(procFixtureEnv(t, "proc-seed", 4242))
	var nop procErrNoProcess
	if err == nil || !strings.Contains(err.Error(), "process 4242 does not exist") {
		t.Errorf("missing root: %v", err)
	} else if !errors.As(err, &nop) {
		t.Errorf("missing root: %T", err)
	}
}

// TestProcPIDNSNotInit points the checks at a process inside a pid
// namespace that is not its init: CRIU refuses, and the fix names the
// init's pid.
func TestProcPIDNSNotInit(t *testing.T) {
	fs := Runner{Checks: ProcessChecks()}.Run(context.Background(), procFixtureEnv(t, "proc-seed", 101))
	for _, f := range fs {
		if f.ID != "process.pidns" {
			continue
		}
		if f.Status != reports.Fail || !strings.Contains(f.Summary, "Can't dump a pid namespace without the process init") ||
			f.Fix == nil || !strings.Contains(f.Fix.Description, "--pid 100") {
			t.Fatalf("pidns: %+v %+v", f, f.Fix)
		}
		return
	}
	t.Fatal("no process.pidns finding")
}
