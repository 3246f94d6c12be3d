package gate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadBad: every mistake in a matrix file is one line naming the
// file, the line and the key.
func TestLoadBad(t *testing.T) {
	tests := []struct {
		file string
		line int
		key  string
		msg  string
	}{
		{"unknown-key.toml", 3, "kernel.imagee", "unknown key"},
		{"unknown-workload-key.toml", 9, "workload.expected", "unknown key"},
		{"unknown-table.toml", 1, "kernels", "unknown key"},
		{"kernel-missing.toml", 3, "kernel.image", "no such file"},
		{"unknown-workload.toml", 8, "workload.corpus", "not a corpus entry"},
		{"unknown-suite.toml", 5, "criu.suite", "not a Debian suite"},
		{"duplicate-cell.toml", 12, "cell", "a duplicate cell"},
		{"duplicate-cell-name.toml", 12, "cell.name", "declared twice"},
		{"duplicate-kernel.toml", 4, "kernel", "the same kernel"},
		{"empty.toml", 0, "", "empty matrix"},
		{"no-cells.toml", 0, "", "empty matrix"},
		{"no-criu.toml", 1, "kernel", "no [[criu]]"},
		{"unknown-series.toml", 2, "kernel.debian", "not a Debian kernel series"},
		{"two-sources.toml", 3, "kernel.image", "both given"},
		{"cell-unknown-kernel.toml", 8, "cell.kernel", "not a [[kernel]]"},
		{"bad-expect.toml", 9, "workload.expect", "expect restore"},
		{"bad-time-limit.toml", 2, "options.time_limit", "not a positive duration"},
		{"wrong-type.toml", 2, "kernel.debian", "incompatible types"},
		{"syntax.toml", 2, "", "expected"},
		{"include-missing.toml", 10, "workload.include", "no such file"},
		{"kata-missing.toml", 2, "kernel.kata_config", "no such file"},
		{"rootfs-missing.toml", 5, "criu.rootfs", "no such file"},
		{"bundle-missing.toml", 8, "workload.bundle", "config.json: no such file"},
		{"built-missing.toml", 2, "kernel.built", "kata-cr kernel build"},
		{"bundle-terminal.toml", 9, "workload.terminal", "goes with command"},
		{"corpus-probe.toml", 9, "workload.verify_exec", "brings its own probe"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			m, err := Load(path)
			if err == nil {
				t.Fatalf("Load(%s) = %d cells, want an error", path, len(m.Cells))
			}
			var me *MatrixError
			if !errors.As(err, &me) {
				t.Fatalf("error %v is a %T, want a *MatrixError", err, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if me.File != path || me.Line != tt.line || me.Key != tt.key || !strings.Contains(me.Msg, tt.msg) {
				t.Errorf("got %s (line %d, key %q), want line %d, key %q, a message with %q", msg, me.Line, me.Key, tt.line, tt.key, tt.msg)
			}
			want := path + ":"
			if tt.line > 0 {
				want = fmt.Sprintf("%s:%d: ", path, tt.line)
			}
			if !strings.HasPrefix(msg, want) {
				t.Errorf("error %q does not start with %q", msg, want)
			}
		})
	}
}

// TestLoadExample reads the README's example: each kernel with each CRIU,
// paths relative to the file, the defaults of the expectations.
func TestLoadExample(t *testing.T) {
	m, err := Load(filepath.Join("testdata", "example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range m.Cells {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, " "); got != "debian-6.1/bookworm debian-6.1/criu-4.2 candidate/bookworm candidate/criu-4.2" {
		t.Errorf("cells %q", got)
	}
	c := m.Cells[2]
	abs, _ := filepath.Abs(filepath.Join("testdata", "kernel", "vmlinuz"))
	if c.Kernel.Image != abs && c.Kernel.Image != filepath.Join("testdata", "kernel", "vmlinuz") {
		t.Errorf("kernel image %q, want testdata/kernel/vmlinuz", c.Kernel.Image)
	}
	if c.Options.TimeLimit != 20*time.Minute || !c.Options.AutoFix || c.Options.RuntimeSetsid != nil {
		t.Errorf("options %+v", c.Options)
	}
	want := map[string]Expect{"counter": ExpectJudged, "vfork": ExpectUnfixable, "sleeper": ExpectRestore, "web": ExpectRestore}
	for _, w := range c.Workloads {
		if want[w.Name] != w.Expect {
			t.Errorf("workload %s expects %q, want %q", w.Name, w.Expect, want[w.Name])
		}
	}
	es := c.Entries()
	if len(es) != 4 || es[0].Workload != "counter" || es[2].Workload != "command" || strings.Join(es[2].Command, " ") != "sleep 3600" {
		t.Fatalf("entries %+v", es)
	}
	web := es[3]
	if web.Name != "web" || web.Bundle == nil || web.Bundle.Rootfs != filepath.Join(web.Bundle.Dir, "rootfs") || web.RootfsTag != BundleTag(0) ||
		len(web.VerifyExec) != 1 || web.VerifyExec[0][0] != "python3" {
		t.Errorf("the bundle's entry %+v", web)
	}
}

// TestLoadCells: [[cell]]s instead of the cross product, with their own
// workloads, expectations and options.
func TestLoadCells(t *testing.T) {
	m, err := Load(filepath.Join("testdata", "cells.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Cells) != 2 {
		t.Fatalf("%d cells, want 2", len(m.Cells))
	}
	old, c := m.Cells[0], m.Cells[1]
	if old.Name != "old" || len(old.Workloads) != 2 || !old.Options.AutoFix || old.Options.TimeLimit != DefaultTimeLimit {
		t.Errorf("cell old: %+v", old)
	}
	if c.Name != "7.3/forky" || c.Kernel.Debian != "7.3" || c.CRIU.Suite != "forky" || c.Options.AutoFix || c.Options.TimeLimit != 5*time.Minute {
		t.Errorf("cell 2: %+v", c)
	}
	if len(c.Workloads) != 1 || c.Workloads[0].Expect != ExpectRestore {
		t.Errorf("cell 2 workloads %+v", c.Workloads)
	}
	if old.Workloads[1].Expect != ExpectJudged {
		t.Errorf("the cell's expectation leaked into another cell: %+v", old.Workloads[1])
	}
	for _, e := range c.Entries() {
		if e.OldAgent {
			t.Errorf("runtime_setsid = true, but %s starts as the old agent", e.Name)
		}
	}
}

// TestDefault is the corpus in the corpus's cells.
func TestDefault(t *testing.T) {
	m := Default()
	if len(m.Cells) != 3 || m.Cells[0].Name != "6.1-criu3.17" || m.Cells[0].Kernel.Debian != "6.1" || m.Cells[0].CRIU.Suite != "bookworm" {
		t.Errorf("default cells %+v", m.Cells)
	}
	es := m.Cells[0].Entries()
	if len(es) == 0 || es[0].Name != "init-not-session-leader" || !es[0].OldAgent {
		t.Errorf("default entries do not keep the corpus's own: %+v", es[:1])
	}
}

// TestREADMEExample: the README's example matrix is the one TestLoadExample
// loads.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- gate-example:begin -->\n```toml\n")
	block, _, ok2 := strings.Cut(rest, "```\n<!-- gate-example:end -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no gate example between its markers")
	}
	if block != string(want) {
		t.Errorf("README.md's gate example differs from testdata/example.toml:\n%s", block)
	}
}
