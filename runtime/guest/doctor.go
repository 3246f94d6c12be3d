package guest

import (
	"context"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// Checks are the host doctor's checks that apply to a guest without a
// workload: the same code, run against the guest's own /proc and /sys.
func Checks() []checks.Check {
	var cs []checks.Check
	for _, group := range [][]checks.Check{checks.SystemChecks(), checks.KernelChecks(), checks.CRIUChecks()} {
		cs = append(cs, group...)
	}
	return cs
}

// Fixers are the fixers --fix may apply in the guest.
func Fixers() []checks.Fixer {
	return []checks.Fixer{checks.LoopbackFixer(), checks.DevptsFixer(), checks.ModuleFixer()}
}

// Doctor runs the checks in the guest, applies the fixers when the job
// says so and checks again, and sends the report.
func Doctor(ctx context.Context, s *Session, job agentapi.Job, version string) error {
	if job.LoadModules {
		if err := s.LoadCRIUModules(); err != nil {
			return err
		}
	}
	env, target := s.Env(ctx)
	s.Progress("checks", "running the checks")
	res := checks.Doctor(ctx, env, checks.Runner{Checks: Checks(), Workers: CheckWorkers}, Fixers(),
		checks.DoctorOptions{Fix: job.Fix, DryRun: job.DryRun})
	for _, a := range res.Actions {
		s.Logf("fix %s: %s", a.Fixer, a.Summary)
	}
	r := reports.New("doctor", version)
	r.Target, r.Findings, r.Actions = target, res.Findings, res.Actions
	return s.Send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
}

// Env gathers what the checks read in the guest: the kernel config
// from /proc/config.gz when the kernel has one, else the config shipped
// beside the kernel in the image; the criu the image ships.
func (s *Session) Env(ctx context.Context) (*checks.Env, reports.Target) {
	m := s.Manifest
	target := reports.Target{Kind: "guest", KernelRelease: s.Release, Arch: s.Machine}
	env, err := checks.NewHostEnv("/proc", "/sys")
	if err != nil {
		// /proc is mounted by init; without it every check says why it
		// cannot run.
		env = &checks.Env{ProcRoot: "/proc", SysRoot: "/sys", Root: true}
	}
	env.KernelRelease = s.Release
	env.ModulesDir = m.ModulesDir
	if env.ModulesDir == "" {
		env.ModulesDir = "/lib/modules/" + s.Release
	}
	cfg, err := kernel.Running("/proc", s.Release)
	if err != nil && m.KernelConfig != "" {
		cfg, err = kernel.Load(m.KernelConfig)
	}
	if err == nil {
		env.Config, env.ConfigSource = cfg, cfg.Source
		target.Sources = append(target.Sources, "kernel config "+cfg.Source)
	} else {
		env.ConfigSource = err.Error() + ": pass --kernel-config FILE when building the guest"
	}
	bin, v, err := criu.Open(ctx, m.CRIU)
	if err != nil {
		env.CRIUMissing = err.Error()
	} else {
		env.CRIU = bin
		target.Sources = append(target.Sources, "criu "+bin.Path)
		target.CRIUVersion = v.String()
	}
	return env, target
}

// CheckWorkers bounds how many checks run at once in the guest: most of
// them wait on a criu process, so a few at a time shorten boot-to-verdict.
const CheckWorkers = 4
