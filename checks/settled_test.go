package checks

import (
	"context"
	"slices"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

// TestSettle: checks that found nothing to fix answer again without
// running, under the IDs they gave (a check may give findings of other
// IDs); a failure, an error and a fixable warning stay live.
func TestSettle(t *testing.T) {
	runs := map[string]int{}
	mk := func(id string, st reports.Status, fix *reports.Fix) Check {
		return Check{ID: id, Run: func(context.Context, *Env) []reports.Finding {
			runs[id]++
			return []reports.Finding{{ID: id + ".sub", Status: st, Fix: fix}}
		}}
	}
	cs := []Check{
		mk("pass", reports.Pass, nil), mk("skip", reports.Skip, nil), mk("warn", reports.Warn, nil),
		mk("warn-fix", reports.Warn, &reports.Fix{Description: "x"}), mk("fail", reports.Fail, nil), mk("error", reports.Error, nil),
	}
	env := &Env{}
	settled, live := Settle(context.Background(), env, cs)
	if want := []string{"warn-fix", "fail", "error"}; !slices.Equal(live, want) {
		t.Errorf("live %q, want %q", live, want)
	}
	again := Runner{Checks: settled}.Run(context.Background(), env)
	for i, id := range []string{"pass", "skip", "warn", "warn-fix", "fail", "error"} {
		want := 1
		if i >= 3 {
			want = 2
		}
		if runs[id] != want {
			t.Errorf("%s ran %d times, want %d", id, runs[id], want)
		}
		if again[i].ID != id+".sub" {
			t.Errorf("finding %d: %s, want %s.sub", i, again[i].ID, id)
		}
	}
}
