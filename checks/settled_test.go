package checks

import (
	"context"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestSettled: checks that found nothing to fix answer again without
// running; a failure, an error and a fixable warning stay live.
func TestSettled(t *testing.T) {
	runs := map[string]int{}
	mk := func(id string, st reports.Status, fix *reports.Fix) Check {
		return Check{ID: id, Run: func(context.Context, *Env) []reports.Finding {
			runs[id]++
			return []reports.Finding{{ID: id, Status: st, Fix: fix}}
		}}
	}
	cs := []Check{
		mk("pass", reports.Pass, nil), mk("skip", reports.Skip, nil), mk("warn", reports.Warn, nil),
		mk("warn-fix", reports.Warn, &reports.Fix{Description: "x"}), mk("fail", reports.Fail, nil), mk("error", reports.Error, nil),
	}
	env := &Env{}
	found := Runner{Checks: cs}.Run(context.Background(), env)
	settled := Settled(cs, found)
	again := Runner{Checks: settled}.Run(context.Background(), env)
	for i, id := range []string{"pass", "skip", "warn", "warn-fix", "fail", "error"} {
		want := 1
		if i >= 3 {
			want = 2
		}
		if runs[id] != want {
			t.Errorf("%s ran %d times, want %d", id, runs[id], want)
		}
		if again[i].ID != id || again[i].Status != found[i].Status {
			t.Errorf("finding %d: %s %s, want %s %s", i, again[i].ID, again[i].Status, id, found[i].Status)
		}
	}
}
