package checks

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

// TestRunner: every check runs whatever the others do, findings keep the
// order of the checks at any worker count, a panic is an error finding and
// an unmet need is a skip with its reason, never a pass.
func TestRunner(t *testing.T) {
	pass := func(id string) Check {
		return Check{ID: id, Category: "test", Level: reports.Required, Title: id,
			Run: func(context.Context, *Env) []reports.Finding {
				if id == "c" {
					return []reports.Finding{{Status: reports.Skip, Reason: "a reason"}}
				}
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
		if fs[4].Summary != "c" {
			t.Errorf("workers=%d: runner did not fill an empty summary with the title: %+v", workers, fs[4])
		}
	}
}

// TestRunnerSilentCheck: a check that returns no finding is reported as an
// error, not dropped from the report.
func TestRunnerSilentCheck(t *testing.T) {
	cs := []Check{{ID: "silent", Category: "test", Level: reports.Required, Title: "silent",
		Run: func(context.Context, *Env) []reports.Finding { return nil }}}
	fs := Runner{Checks: cs}.Run(context.Background(), &Env{})
	if len(fs) != 1 || fs[0].ID != "silent" || fs[0].Status != reports.Error || fs[0].Reason == "" {
		t.Errorf("silent check gave %+v, want one error finding with a reason", fs)
	}
}

// TestRunnerMemo: the checks of one Run share one reading even when they
// run at once, a second Run reads afresh (the process tree used to be
// shared through a 2 s cache, so a re-run after --fix could judge the tree
// as it was before), and a panic while reading gives the other checks an
// error instead of a nil value.
func TestRunnerMemo(t *testing.T) {
	type key struct{}
	var loads atomic.Int32
	read := func(ctx context.Context) (int, error) {
		return memoize(ctx, key{}, func() (int, error) { return int(loads.Add(1)), nil })
	}
	var cs []Check
	for i := range 8 {
		cs = append(cs, Check{ID: fmt.Sprint("c", i), Title: "reader",
			Run: func(ctx context.Context, _ *Env) []reports.Finding {
				n, err := read(ctx)
				return []reports.Finding{{Status: reports.Pass, Summary: fmt.Sprint(n, err)}}
			}})
	}
	for _, workers := range []int{1, 4} {
		for run := range 2 {
			before := loads.Load()
			fs := Runner{Checks: cs, Workers: workers}.Run(context.Background(), &Env{})
			if got := loads.Load() - before; got != 1 {
				t.Errorf("workers=%d run %d: %d readings, want 1", workers, run, got)
			}
			want := fmt.Sprint(before+1, nil)
			for _, f := range fs {
				if f.Summary != want {
					t.Errorf("workers=%d run %d: %s saw %q, want %q", workers, run, f.ID, f.Summary, want)
				}
			}
		}
	}
	if n, _ := read(context.Background()); n != int(loads.Load()) {
		t.Errorf("outside a Run: got reading %d, want a fresh one", n)
	}

	type pkey struct{}
	panicky := []Check{
		{ID: "first", Title: "first", Run: func(ctx context.Context, _ *Env) []reports.Finding {
			memoize(ctx, pkey{}, func() (*int, error) { panic("broken reader") })
			return nil
		}},
		{ID: "second", Title: "second", Run: func(ctx context.Context, _ *Env) []reports.Finding {
			v, err := memoize(ctx, pkey{}, func() (*int, error) { return new(int), nil })
			if err == nil || v != nil {
				return []reports.Finding{{Status: reports.Pass, Summary: "got a value after the reader panicked"}}
			}
			return []reports.Finding{{Status: reports.Error, Reason: err.Error()}}
		}},
	}
	fs := Runner{Checks: panicky}.Run(context.Background(), &Env{})
	if fs[0].Status != reports.Error || fs[1].Status != reports.Error {
		t.Errorf("panicking reader: got %+v, want two errors", fs)
	}
}

// TestPredict separates a tree CRIU options can save from one they cannot,
// and the tree from the machine.
func TestPredict(t *testing.T) {
	fail := func(id, cat string, opts criuopt.Set) reports.Finding {
		f := reports.Finding{ID: id, Category: cat, Level: reports.Required, Status: reports.Fail, Summary: id}
		if !opts.IsZero() {
			f.Fix = &reports.Fix{CRIU: opts}
		}
		return f
	}
	hosts := []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}}
	tests := []struct {
		name                        string
		fs                          []reports.Finding
		dump, withOpts, tree, envOK bool
		opts                        criuopt.Set
	}{
		{"clean", nil, true, true, true, true, criuopt.Set{}},
		{"locks", []reports.Finding{fail("process.file-locks", "process", criuopt.Set{FileLocks: true})}, false, true, true, true, criuopt.Set{FileLocks: true}},
		{"session", []reports.Finding{fail("process.session-leader", "process", criuopt.Set{})}, false, false, false, true, criuopt.Set{}},
		{"machine", []reports.Finding{fail("criu.check", "criu", criuopt.Set{})}, false, false, true, false, criuopt.Set{}},
		{"dedup", []reports.Finding{
			fail("mount.external-bind", "mount", criuopt.Set{ExternalMounts: hosts}),
			fail("mount.other", "mount", criuopt.Set{ExternalMounts: hosts, FileLocks: true}),
		}, false, true, true, true, criuopt.Set{ExternalMounts: hosts, FileLocks: true}},
	}
	for _, tt := range tests {
		p := Predict(tt.fs)
		if p.DumpWillSucceed != tt.dump || p.WithOptions != tt.withOpts || p.TreeDumpable != tt.tree || p.EnvironmentReady != tt.envOK {
			t.Errorf("%s: got %+v", tt.name, p)
		}
		if !reflect.DeepEqual(p.CRIU, tt.opts) {
			t.Errorf("%s: options %q, want %q", tt.name, p.CRIU.DumpArgs(), tt.opts.DumpArgs())
		}
	}
}
