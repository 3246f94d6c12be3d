package crjob

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

func TestCanPreDump(t *testing.T) {
	pass := func(id string) reports.Finding { return reports.Finding{ID: id, Status: reports.Pass} }
	tests := []struct {
		name     string
		findings []reports.Finding
		ok       bool
		blocked  []string
	}{
		{"both pass", []reports.Finding{pass("criu.feature.mem_dirty_track"), pass("kernel.MEM_SOFT_DIRTY")}, true, nil},
		{"criu says no", []reports.Finding{{ID: "criu.feature.mem_dirty_track", Status: reports.Warn, Summary: "unsupported"}, pass("kernel.MEM_SOFT_DIRTY")},
			false, []string{"criu.feature.mem_dirty_track"}},
		{"kernel check skipped", []reports.Finding{pass("criu.feature.mem_dirty_track"), {ID: "kernel.MEM_SOFT_DIRTY", Status: reports.Skip, Reason: "no kernel config"}},
			false, []string{"kernel.MEM_SOFT_DIRTY"}},
		{"nothing ran", nil, false, []string{"criu.feature.mem_dirty_track", "kernel.MEM_SOFT_DIRTY"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, ref := canPreDump(tc.findings)
			if ok != tc.ok || strings.Join(ref.BlockedBy, ",") != strings.Join(tc.blocked, ",") {
				t.Errorf("canPreDump = %v %v, want %v %v", ok, ref.BlockedBy, tc.ok, tc.blocked)
			}
			if !ok && (ref.Step != "pre-dump" || ref.Reason == "") {
				t.Errorf("refusal %+v: want step pre-dump with a reason", ref)
			}
		})
	}
}

// TestPreDumpLinks: the chain CRIU links is unlinked for the host and
// linked again, the same way, for a restore.
func TestPreDumpLinks(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"pre-dump-1", "pre-dump-2"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// As CRIU leaves them.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("../pre-dump-1", filepath.Join(dir, "pre-dump-2", "parent")))
	must(os.Symlink("pre-dump-2", filepath.Join(dir, "parent")))
	want := map[string]string{filepath.Join(dir, "parent"): "pre-dump-2", filepath.Join(dir, "pre-dump-2", "parent"): "../pre-dump-1"}
	must(unlinkPreDumps(dir))
	for p := range want {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still there after unlinkPreDumps", p)
		}
	}
	must(linkPreDumps(dir))
	must(linkPreDumps(dir)) // twice is fine
	for p, target := range want {
		if got, err := os.Readlink(p); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %q", p, got, err, target)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "pre-dump-1", "parent")); err == nil {
		t.Error("the first pre-dump got a parent")
	}
	// No chain: nothing to link.
	plain := t.TempDir()
	must(linkPreDumps(plain))
	if _, err := os.Lstat(filepath.Join(plain, "parent")); err == nil {
		t.Error("a plain dump got a parent")
	}
	// A gap is an error.
	must(os.Mkdir(filepath.Join(plain, "pre-dump-2"), 0o700))
	if err := linkPreDumps(plain); err == nil {
		t.Error("a chain without pre-dump-1 was linked")
	}
}
