package checks

import (
	"context"
	"slices"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestRunner: every check runs whatever the others do, findings keep the
// order of the checks at any worker count, a panic is an error finding and
// an unmet need is a skip with its reason, never a pass.
func TestRunner(t *testing.T) {
	pass := func(id string) Check {
		return Check{ID: id, Category: "test", Level: reports.Required, Title: id,
			Run: func(context.Context, *Env) []reports.Finding {
				return []reports.Finding{{Status: reports.Pass, Summary: id}}
			}}
	}
	cs := []Check{
		pass("a"),
		{ID: "boom", Category: "test", Level: reports.Required, Title: "boom",
			Run: func(context.Context, *Env) []reports.Finding { panic("broken check") }},
		{ID: "needs-pid", Category: "test", Level: reports.Required, Title: "needs a pid", Needs: []Need{NeedPID},
			Run: func(context.Context, *Env) []reports.Finding { t.Error("ran without its need"); return nil }},
		pass("b"), pass("c"), pass("d"),
	}
	for _, workers := range []int{0, 1, 4} {
		fs := Runner{Checks: cs, Workers: workers}.Run(context.Background(), &Env{})
		var ids []string
		for _, f := range fs {
			ids = append(ids, f.ID)
		}
		if want := []string{"a", "boom", "needs-pid", "b", "c", "d"}; !slices.Equal(ids, want) {
			t.Errorf("workers=%d: ids %q, want %q", workers, ids, want)
		}
		if fs[1].Status != reports.Error || fs[1].Reason == "" || !fs[1].Blocking() {
			t.Errorf("workers=%d: panicking check gave %+v, want a blocking error", workers, fs[1])
		}
		if fs[2].Status != reports.Skip || fs[2].Reason == "" {
			t.Errorf("workers=%d: unmet need gave %+v, want a skip with a reason", workers, fs[2])
		}
		if fs[0].Category != "test" || fs[0].Level != reports.Required {
			t.Errorf("workers=%d: runner did not fill category and level: %+v", workers, fs[0])
		}
	}
}

// TestPredict separates a tree CRIU options can save from one they cannot,
// and the tree from the machine.
func TestPredict(t *testing.T) {
	fail := func(id, cat string, opts ...string) reports.Finding {
		f := reports.Finding{ID: id, Category: cat, Level: reports.Required, Status: reports.Fail, Summary: id}
		if len(opts) > 0 {
			f.Fix = &reports.Fix{CRIUOptions: opts}
		}
		return f
	}
	tests := []struct {
		name                        string
		fs                          []reports.Finding
		dump, withOpts, tree, envOK bool
		opts                        []string
	}{
		{"clean", nil, true, true, true, true, nil},
		{"locks", []reports.Finding{fail("process.file-locks", "process", "--file-locks")}, false, true, true, true, []string{"--file-locks"}},
		{"session", []reports.Finding{fail("process.session-leader", "process")}, false, false, false, true, nil},
		{"machine", []reports.Finding{fail("criu.check", "criu")}, false, false, true, false, nil},
		{"dedup", []reports.Finding{
			fail("mount.external-bind", "mount", "--external=mnt[/etc/hosts]:hosts"),
			fail("mount.other", "mount", "--external=mnt[/etc/hosts]:hosts", "--file-locks"),
		}, false, true, true, true, []string{"--external=mnt[/etc/hosts]:hosts", "--file-locks"}},
	}
	for _, tt := range tests {
		p := Predict(tt.fs)
		if p.DumpWillSucceed != tt.dump || p.WithOptions != tt.withOpts || p.TreeDumpable != tt.tree || p.EnvironmentReady != tt.envOK {
			t.Errorf("%s: got %+v", tt.name, p)
		}
		if !slices.Equal(p.CRIUOptions, tt.opts) {
			t.Errorf("%s: options %q, want %q", tt.name, p.CRIUOptions, tt.opts)
		}
	}
}
