// Package checks holds the check registry, the runner that runs every check
// and judges afterwards, and the fixers that change the system on request.
// A check only reads; a fixer is a separate, explicit step.
package checks

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/kata-cr/kata-cr/reports"
)

// Check is one named probe. Run returns one or more findings; it must not
// change the system.
type Check struct {
	// ID is stable: tools and users match on it.
	ID       string
	Category string
	Level    reports.Level
	// Title is a short human name for the check.
	Title string
	// Needs lists the Env parts the check reads; a check whose needs are
	// not met is skipped with the reason, never passed.
	Needs []Need
	Run   func(ctx context.Context, env *Env) []reports.Finding
}

// Need is a precondition of a check.
type Need string

// The preconditions a check can declare.
const (
	NeedRoot   Need = "root"
	NeedPID    Need = "pid"
	NeedCRIU   Need = "criu"
	NeedConfig Need = "kernel-config"
)

// Runner runs checks against one Env.
type Runner struct {
	Checks []Check
	// Workers is how many checks run at once; 0 or 1 runs them one after
	// the other. Most checks wait on a criu process or read /proc, so a few
	// at a time keep the doctor fast; findings keep the order of Checks.
	Workers int
}

// Run runs every check, never stopping at the first failure, and turns a
// panic in a check into an error finding. The checks of one Run share what
// they read through memoize; a later Run reads the system afresh.
func (r Runner) Run(ctx context.Context, env *Env) []reports.Finding {
	ctx = context.WithValue(ctx, runMemoKey{}, &runMemo{vals: map[any]*memoEntry{}})
	results := make([][]reports.Finding, len(r.Checks))
	workers := max(r.Workers, 1)
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, c := range r.Checks {
		if reason := env.unmet(c.Needs); reason != "" {
			results[i] = []reports.Finding{{
				ID: c.ID, Category: c.Category, Level: c.Level, Status: reports.Skip,
				Summary: c.Title, Reason: reason,
			}}
			continue
		}
		if workers == 1 {
			results[i] = runOne(ctx, c, env)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = runOne(ctx, c, env)
		}()
	}
	wg.Wait()
	var out []reports.Finding
	for _, fs := range results {
		out = append(out, fs...)
	}
	return out
}

// Rerun runs again only the checks that need need (NeedPID: those that
// look at the workload) and keeps the findings of the others from prev,
// a Run of the same checks: after a change that only they can see, such
// as a restarted workload.
func (r Runner) Rerun(ctx context.Context, env *Env, prev []reports.Finding, need Need) []reports.Finding {
	again := Runner{Workers: r.Workers}
	ids := map[string]bool{}
	for _, c := range r.Checks {
		if slices.Contains(c.Needs, need) {
			again.Checks = append(again.Checks, c)
			ids[c.ID] = true
		}
	}
	fresh := again.Run(ctx, env)
	byCheck := map[string][]reports.Finding{}
	for _, f := range fresh {
		byCheck[f.ID] = append(byCheck[f.ID], f)
	}
	var out []reports.Finding
	done := map[string]bool{}
	for _, f := range prev {
		if !ids[f.ID] {
			out = append(out, f)
			continue
		}
		if !done[f.ID] {
			out = append(out, byCheck[f.ID]...)
			done[f.ID] = true
		}
	}
	for _, c := range again.Checks {
		if !done[c.ID] {
			out = append(out, byCheck[c.ID]...)
		}
	}
	return out
}

// runMemo holds what the checks of one Runner.Run read once and share,
// such as the process tree: reading /proc again for every check would cost
// a dozen passes over the tree. It lives in the Run's context, so checks
// running at once (Runner.Workers) wait for one reading, and two runs never
// see each other's.
type runMemo struct {
	mu   sync.Mutex
	vals map[any]*memoEntry
}

type memoEntry struct {
	once sync.Once
	val  any
	err  error
}

type runMemoKey struct{}

// errMemoPanicked is what the other checks get when the check that was
// reading a shared value panicked (that check reports the panic itself).
var errMemoPanicked = errors.New("reading it panicked in another check: see that check's error")

// memoize returns load's result, calling load once per Runner.Run and key.
// Outside a Run (a check called on its own) it just calls load.
func memoize[T any](ctx context.Context, key any, load func() (T, error)) (T, error) {
	m, _ := ctx.Value(runMemoKey{}).(*runMemo)
	if m == nil {
		return load()
	}
	m.mu.Lock()
	e, ok := m.vals[key]
	if !ok {
		e = &memoEntry{}
		m.vals[key] = e
	}
	m.mu.Unlock()
	e.once.Do(func() {
		e.err = errMemoPanicked
		e.val, e.err = load()
	})
	v, _ := e.val.(T)
	return v, e.err
}

func runOne(ctx context.Context, c Check, env *Env) (fs []reports.Finding) {
	defer func() {
		if p := recover(); p != nil {
			fs = []reports.Finding{{
				ID: c.ID, Category: c.Category, Level: c.Level, Status: reports.Error,
				Summary: c.Title, Reason: fmt.Sprintf("check panicked: %v", p),
				Evidence: firstLines(string(debug.Stack()), 8),
			}}
		}
	}()
	fs = c.Run(ctx, env)
	if len(fs) == 0 {
		// A check that says nothing would vanish from the report, which
		// reads as if it had never been asked.
		fs = []reports.Finding{{Status: reports.Error, Summary: c.Title, Reason: "the check reported no finding"}}
	}
	for i := range fs {
		if fs[i].Category == "" {
			fs[i].Category = c.Category
		}
		if fs[i].Level == "" {
			fs[i].Level = c.Level
		}
		if fs[i].ID == "" {
			fs[i].ID = c.ID
		}
		if fs[i].Summary == "" {
			fs[i].Summary = c.Title
		}
	}
	return fs
}

func firstLines(s string, n int) []string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return lines
}

// treeCategories are the categories of findings about the checked process
// tree itself, as opposed to the machine it runs on.
var treeCategories = map[string]bool{"process": true, "mount": true}

// Predict turns findings into a prediction of a plain CRIU dump. A blocking
// finding makes the dump fail. When every blocking finding can be worked
// around with CRIU options, WithOptions says so and the fixes' options are
// merged into the prediction's.
func Predict(fs []reports.Finding) *reports.Prediction {
	p := &reports.Prediction{DumpWillSucceed: true, WithOptions: true, TreeDumpable: true, EnvironmentReady: true}
	for _, f := range fs {
		if f.Status == reports.Pass && f.Fix != nil && f.Fix.Speedup {
			p.CRIU = p.CRIU.Merge(f.Fix.CRIU)
			p.Restore = p.Restore.Merge(f.Fix.Restore)
			continue
		}
		if f.Status != reports.Fail && f.Status != reports.Error && f.Status != reports.Warn {
			continue
		}
		if f.Loses != "" && !slices.Contains(p.Losses, f.ID) {
			p.Losses = append(p.Losses, f.ID)
		}
		hasOpts := f.Fix != nil && !f.Fix.CRIU.IsZero()
		if hasOpts {
			p.CRIU = p.CRIU.Merge(f.Fix.CRIU)
			p.Restore = p.Restore.Merge(f.Fix.Restore)
		}
		if f.Blocking() {
			p.DumpWillSucceed = false
			p.Reasons = append(p.Reasons, f.ID+": "+f.Summary)
			if !slices.Contains(p.BlockedBy, f.ID) {
				p.BlockedBy = append(p.BlockedBy, f.ID)
			}
			if !hasOpts {
				p.WithOptions = false
			}
			switch {
			case treeCategories[f.Category] && !hasOpts:
				p.TreeDumpable = false
			case !treeCategories[f.Category]:
				p.EnvironmentReady = false
			}
		}
	}
	return p
}
