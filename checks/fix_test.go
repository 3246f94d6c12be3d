package checks

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

func TestUnmended(t *testing.T) {
	fail := func(id string, fix *reports.Fix) reports.Finding {
		return reports.Finding{ID: id, Level: reports.Required, Status: reports.Fail, Fix: fix}
	}
	restart := &reports.Fix{AutoFixable: true, Fixer: FixerIDRestartSetsid}
	fixers := []Fixer{{ID: FixerIDRestartSetsid}, {ID: FixerIDLoadModule}}
	tests := []struct {
		name string
		fs   []reports.Finding
		want []string
	}{
		{"all mended", []reports.Finding{
			fail("process.session-leader", restart),
			fail("mount.external-bind", &reports.Fix{CRIU: criuopt.Set{ShellJob: true}}),
			fail("kernel.UNIX_DIAG", &reports.Fix{AutoFixable: true, Fixer: FixerIDLoadModule}),
			{ID: "criu.check-experimental", Level: reports.Optional, Status: reports.Fail},
			{ID: "process.tty", Level: reports.Required, Status: reports.Warn},
		}, nil},
		{"a blocker without a fix", []reports.Finding{
			fail("process.session-leader", restart), fail("process.pidns", &reports.Fix{Description: "no"}), fail("process.pidns", nil),
		}, []string{"process.pidns"}},
		{"a fixer that is not there", []reports.Finding{
			fail("system.devpts", &reports.Fix{AutoFixable: true, Fixer: FixerIDMountDevpts}),
		}, []string{"system.devpts"}},
		{"an error", []reports.Finding{{ID: "process.files", Level: reports.Required, Status: reports.Error}}, []string{"process.files"}},
	}
	for _, tt := range tests {
		if got := Unmended(tt.fs, fixers); !slices.Equal(got, tt.want) {
			t.Errorf("%s: Unmended = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestDoctorDestructiveFix: a destructive fixer runs after the others and
// after the checks ran again, and only when what is left is mended; a
// blocker that only the safe fixes mend does not stop it, one that nothing
// mends does.
func TestDoctorDestructiveFix(t *testing.T) {
	type world struct{ moduleLoaded, restarted, nested bool }
	run := func(w *world) ([]reports.Finding, []reports.Action, *reports.Prediction) {
		checks := []Check{
			{ID: "kernel.UNIX_DIAG", Category: "kernel", Level: reports.Required, Run: func(context.Context, *Env) []reports.Finding {
				if w.moduleLoaded {
					return []reports.Finding{{Status: reports.Pass}}
				}
				return []reports.Finding{{Status: reports.Fail, Fix: &reports.Fix{AutoFixable: true, Fixer: FixerIDLoadModule}}}
			}},
			// criu check fails until the module is loaded; nothing fixes it itself.
			{ID: "criu.check", Category: "criu", Level: reports.Required, Run: func(context.Context, *Env) []reports.Finding {
				if w.moduleLoaded {
					return []reports.Finding{{Status: reports.Pass}}
				}
				return []reports.Finding{{Status: reports.Fail}}
			}},
			{ID: "process.session-leader", Category: "process", Level: reports.Required, Needs: []Need{NeedPID}, Run: func(context.Context, *Env) []reports.Finding {
				if w.restarted {
					return []reports.Finding{{Status: reports.Pass}}
				}
				return []reports.Finding{{Status: reports.Fail, Fix: &reports.Fix{AutoFixable: true, Fixer: FixerIDRestartSetsid}}}
			}},
			{ID: "process.pidns", Category: "process", Level: reports.Required, Needs: []Need{NeedPID}, Run: func(context.Context, *Env) []reports.Finding {
				if w.nested {
					return []reports.Finding{{Status: reports.Fail}}
				}
				return []reports.Finding{{Status: reports.Pass}}
			}},
		}
		fixers := []Fixer{
			{ID: FixerIDRestartSetsid, Destructive: true, Apply: func(context.Context, *Env, reports.Finding) (reports.Action, error) {
				w.restarted = true
				return reports.Action{Applied: true, Summary: "restarted"}, nil
			}},
			{ID: FixerIDLoadModule, Apply: func(context.Context, *Env, reports.Finding) (reports.Action, error) {
				w.moduleLoaded = true
				return reports.Action{Applied: true, Summary: "loaded"}, nil
			}},
		}
		runs := map[string]int{}
		for i, c := range checks {
			run := c.Run
			checks[i].Run = func(ctx context.Context, env *Env) []reports.Finding {
				runs[c.ID]++
				return run(ctx, env)
			}
		}
		res := Doctor(context.Background(), &Env{PID: 1}, Runner{Checks: checks}, fixers, DoctorOptions{Fix: true, Predict: true})
		// After the restart, only the checks of the workload run again.
		if w.restarted && (runs["criu.check"] != 2 || runs["process.session-leader"] != 3) {
			t.Errorf("checks ran %v times: want the guest's twice and the workload's three times", runs)
		}
		return res.Findings, res.Actions, res.Plan
	}

	w := &world{}
	_, acts, plan := run(w)
	if !w.restarted || !w.moduleLoaded || !plan.DumpWillSucceed {
		t.Errorf("every blocker mended: restarted %v, module %v, plan %+v", w.restarted, w.moduleLoaded, plan)
	}
	if len(acts) != 2 || acts[0].Fixer != FixerIDLoadModule || acts[1].Fixer != FixerIDRestartSetsid || !acts[1].Applied {
		t.Errorf("actions %+v: want the module loaded, then the restart", acts)
	}

	w = &world{nested: true}
	_, acts, plan = run(w)
	if w.restarted {
		t.Errorf("restarted although process.pidns still blocks")
	}
	i := slices.IndexFunc(acts, func(a reports.Action) bool { return a.Fixer == FixerIDRestartSetsid })
	if i < 0 || acts[i].Applied || !slices.Equal(acts[i].BlockedBy, []string{"process.pidns"}) || !strings.Contains(acts[i].Error, "refused") {
		t.Errorf("actions %+v: want the restart refused, blocked by process.pidns", acts)
	}
	if plan.DumpWillSucceed || !slices.Equal(plan.BlockedBy, []string{"process.session-leader", "process.pidns"}) {
		t.Errorf("plan %+v: want the dump still failing on the session leader and the pid namespace", plan)
	}
}
