package main

import (
	"context"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

func init() { register(agentapi.JobDoctor, runDoctor) }

// guestChecks are the host doctor's checks that apply to a guest without a
// workload: the same code, run against the guest's own /proc and /sys.
func guestChecks() []checks.Check {
	var cs []checks.Check
	for _, group := range [][]checks.Check{checks.SystemChecks(), checks.KernelChecks(), checks.CRIUChecks()} {
		cs = append(cs, group...)
	}
	return cs
}

// guestFixers are the fixers --fix may apply in the guest.
func guestFixers() []checks.Fixer {
	return []checks.Fixer{checks.LoopbackFixer(), checks.DevptsFixer(), checks.ModuleFixer()}
}

// runDoctor runs the checks in the guest, applies the fixers when the job
// says so and checks again, and sends the report.
func runDoctor(ctx context.Context, s *session, job agentapi.Job) error {
	if job.LoadModules {
		if err := s.loadCRIUModules(); err != nil {
			return err
		}
	}
	env, target := s.guestEnv(ctx)
	runner := checks.Runner{Checks: guestChecks(), Workers: checkWorkers}
	s.progress("checks", "running %d checks", len(runner.Checks))
	findings := runner.Run(ctx, env)
	r := reports.New("doctor", version)
	fixers := guestFixers()
	if job.Fix {
		s.progress("fix", "applying fixes")
		r.Actions = checks.ApplyFixes(ctx, env, findings, fixers, job.DryRun)
		for _, a := range r.Actions {
			s.logf("fix %s: %s", a.Fixer, a.Summary)
		}
		if len(r.Actions) > 0 && !job.DryRun {
			s.progress("checks", "checking again after %d fixes", len(r.Actions))
			findings = runner.Run(ctx, env)
		}
	} else {
		r.Actions = checks.ApplyFixes(ctx, env, findings, fixers, true)
	}
	r.Target = target
	r.Findings = findings
	return s.send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
}

// guestEnv gathers what the checks read in the guest: the kernel config
// from /proc/config.gz when the kernel has one, else the config shipped
// beside the kernel in the image; the criu the image ships.
func (s *session) guestEnv(ctx context.Context) (*checks.Env, reports.Target) {
	m := s.manifest
	target := reports.Target{Kind: "guest", KernelRelease: s.release, Arch: s.machine}
	env, err := checks.NewHostEnv("/proc", "/sys")
	if err != nil {
		// /proc is mounted by init; without it every check says why it
		// cannot run.
		env = &checks.Env{ProcRoot: "/proc", SysRoot: "/sys", Root: true}
	}
	env.KernelRelease = s.release
	env.ModulesDir = m.ModulesDir
	if env.ModulesDir == "" {
		env.ModulesDir = "/lib/modules/" + s.release
	}
	cfg, err := kernel.Running("/proc", s.release)
	if err != nil && m.KernelConfig != "" {
		cfg, err = kernel.Load(m.KernelConfig)
	}
	if err == nil {
		env.Config, env.ConfigSource = cfg, cfg.Source
		target.Sources = append(target.Sources, "kernel config "+cfg.Source)
	} else {
		env.ConfigSource = err.Error() + ": pass --kernel-config FILE when building the guest"
	}
	bin, err := criu.Find(m.CRIU)
	if err != nil {
		env.CRIUMissing = err.Error()
	} else {
		env.CRIU = bin
		target.Sources = append(target.Sources, "criu "+bin.Path)
		if v, err := bin.Version(ctx); err == nil {
			target.CRIUVersion = v.String()
		}
	}
	return env, target
}

// checkWorkers bounds how many checks run at once in the guest: most of
// them wait on a criu process, so a few at a time shorten boot-to-verdict.
const checkWorkers = 4
