package checks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criulog"
	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

// criuFeature is one `criu check --feature` probe worth asking about.
type criuFeature struct {
	Name  string
	Level reports.Level
	// Gives says what the feature is needed for.
	Gives string
	// Fix says what to do when the feature is missing.
	Fix string
}

// criuFeatures are the features kata-cr asks criu about. Names are those
// of `criu check --help` in CRIU 3.17; a criu that does not know one is
// reported as a skip.
var criuFeatures = []criuFeature{
	{"ns_pid", reports.Recommended, "NSpid in /proc/PID/status, to dump a container's own pid namespace",
		"use a kernel of 4.1 or later"},
	{"clone3_set_tid", reports.Recommended, "restoring PIDs with clone3(set_tid) instead of racing on ns_last_pid",
		"use a kernel of 5.5 or later"},
	{"seccomp_filters", reports.Recommended, "dumping the seccomp filters a container runtime installs",
		"use a kernel with CONFIG_SECCOMP_FILTER and PTRACE_SECCOMP_GET_FILTER (4.4 or later)"},
	{"mem_dirty_track", reports.Optional, "pre-dump and iterative migration (soft-dirty page tracking)",
		"enable CONFIG_MEM_SOFT_DIRTY in the kernel"},
	{"uffd", reports.Optional, "lazy restore (--lazy-pages) through userfaultfd",
		"enable CONFIG_USERFAULTFD in the kernel"},
	{"uffd-noncoop", reports.Optional, "lazy restore of processes that fork, remap or unmap",
		"use a kernel of 4.11 or later with CONFIG_USERFAULTFD"},
	{"pidfd_store", reports.Optional, "--pidfd-store, which detects PID reuse between pre-dumps",
		"use a kernel of 5.4 or later (pidfd_open)"},
	{"network_lock_nftables", reports.Optional, "--network-lock nftables, locking the network without iptables",
		"use a criu built with libnftables and a kernel with nf_tables"},
	{"move_mount_set_group", reports.Optional, "the mount-v2 restore engine, which restores mount propagation reliably",
		"use a kernel of 5.15 or later"},
	{"timens", reports.Optional, "restoring the workload's clocks in a time namespace",
		"enable CONFIG_TIME_NS (kernel 5.6 or later)"},
}

// featuresAllSince and featuresAllBefore bound the CRIU versions whose
// `criu check --all` runs, among its extra checks, the very function
// `criu check --feature NAME` runs for each of criuFeatures (cr-check.c's
// feature_list against cr_check's category 2, read in 3.17, 3.17.1, 4.1.1
// and 4.2). For another version each feature is asked on its own.
const (
	featuresAllSince  = 31700
	featuresAllBefore = 40300
)

// featuresInAll says whether this criu's --all covers every feature.
func featuresInAll(ctx context.Context, env *Env) bool {
	v, err := env.CRIU.Version(ctx)
	return err == nil && v.Int() >= featuresAllSince && v.Int() < featuresAllBefore
}

// CRIUChecks are the probes of the criu binary: found and its version,
// `criu check` in its three categories, features, and whether this criu
// can work on this kernel at all.
func CRIUChecks() []Check {
	return []Check{
		{ID: "criu.binary", Category: "criu", Level: reports.Required,
			Title: "criu binary and version", Run: checkCRIUBinary},
		{ID: "criu.kernel-compat", Category: "criu", Level: reports.Required,
			Title: "criu version works on this kernel", Needs: []Need{NeedCRIU}, Run: checkCRIUKernelCompat},
		{ID: "criu.check", Category: "criu", Level: reports.Required,
			Title: "criu check", Needs: []Need{NeedCRIU, NeedRoot},
			Run: criuCheckRun(criu.CategoryRequired)},
		{ID: "criu.check-extra", Category: "criu", Level: reports.Recommended,
			Title: "criu check --extra", Needs: []Need{NeedCRIU, NeedRoot},
			Run: criuCheckRun(criu.CategoryExtra)},
		{ID: "criu.check-experimental", Category: "criu", Level: reports.Optional,
			Title: "criu check --experimental", Needs: []Need{NeedCRIU, NeedRoot},
			Run: criuCheckRun(criu.CategoryExperimental)},
		{ID: "criu.features", Category: "criu", Level: reports.Optional,
			Title: "criu features", Needs: []Need{NeedCRIU, NeedRoot}, Run: checkCRIUFeatures},
	}
}

func checkCRIUBinary(ctx context.Context, env *Env) []reports.Finding {
	if env.CRIU == nil {
		why := env.CRIUMissing
		if why == "" {
			why = criu.ErrNotFound.Error()
		}
		return []reports.Finding{{Status: reports.Fail, Summary: "no criu binary: nothing can be checkpointed",
			Evidence: []string{why},
			Fix:      &reports.Fix{Description: "install criu (apt-get install criu) or pass --criu PATH"}}}
	}
	v, err := env.CRIU.Version(ctx)
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "criu at " + env.CRIU.Path + " does not say its version",
			Reason: err.Error(),
			Fix:    &reports.Fix{Description: "reinstall criu (apt-get install --reinstall criu) or pass another with --criu PATH"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Summary: fmt.Sprintf("criu %s at %s", v, env.CRIU.Path),
		Evidence: []string{fmt.Sprintf("%s: version %s (%d)", env.CRIU.Path, v, v.Int())}}}
}

// compatRemedies are the kata-cr ways out of a compatibility issue of
// kernel.CompatIssues, by issue ID; the table's own fix is quoted beside.
var compatRemedies = map[string]string{
	"compat.vdso-6.13": "use CRIU 4.1 or later (e.g. kata-cr --criu-suite trixie)",
	// Only a tree with inet sockets is hit: criu.inet-sockets judges it.
	"compat.inet-sockopt-6.16": inetRemedy,
}

// checkCRIUKernelCompat asks the compatibility table what no criu check
// reveals before a dump, or what criu check reports only as an obscure
// error (the 6.13 vDSO split).
func checkCRIUKernelCompat(ctx context.Context, env *Env) []reports.Finding {
	if env.KernelRelease == "" {
		return []reports.Finding{{Status: reports.Skip, Reason: "kernel release unknown"}}
	}
	if _, err := kernel.ParseRelease(env.KernelRelease); err != nil {
		return []reports.Finding{{Status: reports.Skip, Reason: err.Error()}}
	}
	v, err := env.CRIU.Version(ctx)
	if err != nil {
		return []reports.Finding{{Status: reports.Skip, Reason: "criu version unknown (see criu.binary): " + err.Error()}}
	}
	pair := fmt.Sprintf("criu %s on kernel %s", v, env.KernelRelease)
	issues := kernel.CompatIssues(env.KernelRelease, v.Int())
	if len(issues) == 0 {
		return []reports.Finding{{Status: reports.Pass, Summary: "no known incompatibility: " + pair,
			Evidence: []string{pair}}}
	}
	var out []reports.Finding
	for _, is := range issues {
		f := reports.Finding{Status: reports.Warn, Summary: pair + ": " + is.Summary,
			Evidence: []string{pair + ": " + is.ID}}
		if is.Blocking {
			f.Status = reports.Fail
		}
		if is.Signature != "" {
			f.Evidence = append(f.Evidence, "criu fails with: "+is.Signature)
		}
		if is.Source != "" {
			f.Evidence = append(f.Evidence, "source: "+is.Source)
		}
		f.Fix = &reports.Fix{Description: is.Fix}
		if r, ok := compatRemedies[is.ID]; ok {
			f.Fix.Description = r
			f.Evidence = append(f.Evidence, "also: "+is.Fix)
		}
		out = append(out, f)
	}
	return out
}

// checkAllKey and checkRequiredKey memoize `criu check --all` and `criu
// check` within one Runner.Run.
type (
	checkAllKey      struct{}
	checkRequiredKey struct{}
)

// requiredCheck runs `criu check` once per Run, before the other CRIU
// checks run criu (they wait for it): a criu that finds no kernel probe
// cache probes the kernel and says which diag module is missing, where a
// later one reads the cache and says nothing of it.
func requiredCheck(ctx context.Context, env *Env) (criu.CheckResult, error) {
	return memoize(ctx, checkRequiredKey{}, func() (criu.CheckResult, error) {
		return env.CRIU.Check(ctx, criu.CategoryRequired)
	})
}

// allGood runs `criu check --all` once per Run, after `criu check` passed:
// every check of CRIU's three categories (the categories run by `criu
// check`, `--extra` and `--experimental` are subsets of it). When CRIU
// says "Looks good." to it, each of them would too, and a passing system
// costs two criu runs instead of thirteen; when not, the checks run one
// by one, as before, to say which failed.
func allGood(ctx context.Context, env *Env) (criu.CheckResult, bool) {
	if req, err := requiredCheck(ctx, env); err != nil || !req.OK {
		return criu.CheckResult{}, false
	}
	res, err := memoize(ctx, checkAllKey{}, func() (criu.CheckResult, error) {
		return env.CRIU.Check(ctx, criu.CategoryAll)
	})
	return res, err == nil && res.OK && res.Verdict == criuLooksGood
}

// categoryFlag is the `criu check` flag of the categories --all covers
// besides the required one.
var categoryFlag = map[string]string{
	criu.CategoryExtra:        "--extra",
	criu.CategoryExperimental: "--experimental",
}

// criuLooksGood is cr_check's verdict when every check it ran passed.
const criuLooksGood = "Looks good."

// allGoodEvidence is the evidence of a check that `criu check --all`
// answered.
func allGoodEvidence(res criu.CheckResult, what string) []string {
	return []string{
		fmt.Sprintf("criu %s: exit 0 in %s: %s", strings.Join(res.Args, " "), res.Duration.Round(time.Millisecond), res.Verdict),
		what + " is part of it: not run again",
	}
}

func criuCheckRun(category string) func(context.Context, *Env) []reports.Finding {
	return func(ctx context.Context, env *Env) []reports.Finding {
		var res criu.CheckResult
		var err error
		if category == criu.CategoryRequired {
			res, err = requiredCheck(ctx, env)
		} else if all, ok := allGood(ctx, env); ok {
			what := "criu check " + categoryFlag[category]
			return []reports.Finding{{Status: reports.Pass, Summary: what + ": looks good (criu check --all, which runs it, looks good)",
				Evidence: allGoodEvidence(all, what)}}
		} else {
			res, err = env.CRIU.Check(ctx, category)
		}
		cmdline := "criu " + strings.Join(res.Args, " ")
		if err != nil {
			return []reports.Finding{{Status: reports.Error, Summary: "criu check could not run", Reason: err.Error()}}
		}
		if res.OK {
			ev := []string{fmt.Sprintf("%s: exit 0 in %s", cmdline, res.Duration.Round(1e6))}
			if res.Verdict != "" {
				ev = append(ev, res.Verdict)
			}
			return []reports.Finding{{Status: reports.Pass, Summary: cmdline + ": looks good", Evidence: ev}}
		}
		f := explainedFailure(cmdline, res)
		f.Status = reports.Fail
		return []reports.Finding{f}
	}
}

// explainedFailure turns a failed criu run into a finding whose summary
// names the first error, whose evidence quotes criu, and whose reason and
// fix come from the log explainer.
func explainedFailure(cmdline string, res criu.CheckResult) reports.Finding {
	exps := criulog.ExplainLines(cmdline, res.Lines)
	var known, unknown []reports.Explanation
	for _, e := range exps {
		if e.Known {
			known = append(known, e)
		} else {
			unknown = append(unknown, e)
		}
	}
	use := known
	if len(use) == 0 {
		use = unknown
	}
	f := reports.Finding{}
	var first string
	if len(use) > 0 && len(use[0].Quote) > 0 {
		first = logMessage(use[0].Quote[len(use[0].Quote)-1])
	} else if len(res.Errors) > 0 {
		first = logMessage(res.Errors[0])
	} else if res.Verdict != "" {
		first = res.Verdict
	} else {
		first = fmt.Sprintf("exit status %d", res.ExitCode)
	}
	f.Summary = cmdline + " fails: " + first
	f.Evidence = append(f.Evidence, fmt.Sprintf("%s: exit status %d", cmdline, res.ExitCode))
	var causes, fixes []string
	for i, e := range use {
		if i == 3 {
			break
		}
		f.Evidence = append(f.Evidence, e.Quote...)
		causes = append(causes, e.Cause)
		if e.Fix != "" {
			fixes = append(fixes, e.Fix)
		}
	}
	if len(use) == 0 {
		f.Evidence = append(f.Evidence, excerpt.Last(res.Lines, 8)...)
		causes = append(causes, "criu printed no error line")
	}
	f.Reason = strings.Join(causes, " ")
	if len(fixes) > 0 {
		f.Fix = &reports.Fix{Description: strings.Join(fixes, " ")}
	}
	return f
}

// logMessage strips criu's timestamp and "Error (file:line): " prefix.
func logMessage(l string) string {
	l = criu.StripLogPrefix(l)
	for _, p := range []string{"Error", "Warn"} {
		if strings.HasPrefix(l, p) {
			if i := strings.Index(l, "): "); i > 0 {
				return strings.TrimSpace(l[i+3:])
			}
		}
	}
	return l
}

// checkCRIUFeatures asks criu about each feature. The probes are separate
// criu processes, so they run a few at a time. When criu fails before it
// gets to the first feature (kerndat, privileges), it would fail the same
// way for every one: that is one skip, not ten.
func checkCRIUFeatures(ctx context.Context, env *Env) []reports.Finding {
	if all, ok := allGood(ctx, env); ok && featuresInAll(ctx, env) {
		out := make([]reports.Finding, len(criuFeatures))
		for i, ft := range criuFeatures {
			out[i] = reports.Finding{ID: "criu.feature." + ft.Name, Level: ft.Level, Status: reports.Pass,
				Summary:  ft.Name + " is supported: " + ft.Gives,
				Evidence: allGoodEvidence(all, "the check of criu check --feature "+ft.Name)}
		}
		return out
	}
	first, criuFailed := featureFinding(ctx, env, criuFeatures[0])
	if criuFailed {
		first.ID, first.Level = "", ""
		first.Summary = "criu features"
		return []reports.Finding{first}
	}
	out := make([]reports.Finding, len(criuFeatures))
	out[0] = first
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, ft := range criuFeatures[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i+1], _ = featureFinding(ctx, env, ft)
		}()
	}
	wg.Wait()
	return out
}

// featureFinding asks about one feature; criuFailed is true when criu
// stopped before it got to the feature.
func featureFinding(ctx context.Context, env *Env, ft criuFeature) (f reports.Finding, criuFailed bool) {
	f = reports.Finding{ID: "criu.feature." + ft.Name, Level: ft.Level}
	ok, detail, err := env.CRIU.Feature(ctx, ft.Name)
	var fe *criu.FeatureError
	switch {
	case errors.As(err, &fe) && fe.Unknown:
		f.Status = reports.Skip
		f.Summary = ft.Name + ": " + ft.Gives
		f.Reason = "this criu does not know the feature " + ft.Name + ": a newer criu may have it"
		if v, verr := env.CRIU.Version(ctx); verr == nil {
			f.Reason = fmt.Sprintf("criu %s does not know the feature %s: a newer criu may have it", v, ft.Name)
		}
	case errors.As(err, &fe):
		f.Status = reports.Skip
		f.Summary = ft.Name + ": " + ft.Gives
		f.Reason = "criu failed before it checked the feature (see criu.check): " + lastError(fe.Result)
		f.Evidence = excerpt.Last(fe.Result.Errors, 3)
		criuFailed = true
	case err != nil:
		f.Status = reports.Error
		f.Summary = ft.Name + ": " + ft.Gives
		f.Reason = err.Error()
	case ok:
		f.Status = reports.Pass
		f.Summary = ft.Name + " is supported: " + ft.Gives
		f.Evidence = []string{"criu check --feature " + ft.Name + ": " + detail}
	default:
		f.Status = reports.Fail
		f.Summary = ft.Name + " is not supported: no " + ft.Gives
		f.Evidence = []string{"criu check --feature " + ft.Name + ": " + detail}
		f.Fix = &reports.Fix{Description: ft.Fix}
	}
	return f, criuFailed
}

func lastError(res criu.CheckResult) string {
	if len(res.Errors) == 0 {
		return fmt.Sprintf("exit status %d", res.ExitCode)
	}
	return logMessage(res.Errors[len(res.Errors)-1])
}
