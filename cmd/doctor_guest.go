package cmd

import (
	"context"
	"errors"
	"time"

	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// runGuestDoctor boots a Kata-style guest and runs the doctor's checks
// inside it: the same check code, against the guest's kernel, modules and
// CRIU. It builds (or takes from the cache) the guest image, picks KVM or
// TCG, sends the agent a doctor job and renders the report the agent sends
// back, with the accelerator and how the guest was booted added.
func runGuestDoctor(ctx context.Context, deps *Deps, g *globalOptions, o *doctorOptions) error {
	// Decide the output format before the work, so a bad -o fails fast.
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	if o.PID != 0 {
		return usagef("--pid %d: checking a process needs --target host (the guest runs no workload of yours)", o.PID)
	}
	gopt := o.guest
	gopt.KernelConfig, gopt.CRIUPath = o.KernelConfig, o.CRIUPath
	if err := gopt.validate(); err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, gopt.Timeout)
	defer cancel()

	p := newProgress(deps, gopt.Verbose)
	gst, err := prepareGuest(ctx, &gopt, p)
	if err != nil {
		return guestRunError(err, gopt.Timeout)
	}
	p.printf("booting the guest under %s", gst.accel.Name)
	job := agentapi.Job{Kind: agentapi.JobDoctor, Fix: o.Fix, Verbose: gopt.Verbose}
	res, err := vm.Run(ctx, gst.bootSpec(&gopt, p), job, p.event)
	if err != nil {
		reportGuestError(deps, err)
		return guestRunError(err, gopt.Timeout)
	}
	r := res.Report
	if r == nil {
		return errors.New("guest agent finished without sending a report")
	}
	r.Command = "doctor"
	r.Target.Accelerator = gst.accel.Name
	r.Target.AcceleratorReason = gst.accel.Reason
	r.Target.Sources = append(r.Target.Sources, "guest kernel "+gst.kernel.Image+" ("+gst.kernel.Source+")")
	r.Findings = append(r.Findings, gst.bootFinding(res))
	p.printf("guest finished in %s", res.Total.Round(100*time.Millisecond))
	return render(deps, g, r)
}
