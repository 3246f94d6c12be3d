package cmd

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// The --overlap values.
const (
	overlapAuto = "auto"
	overlapOn   = "on"
	overlapOff  = "off"
)

// overlapCPUs is how many host CPUs auto wants under TCG before it boots
// the restore guest during the dump: each TCG guest keeps a host CPU busy.
// Measured on two CPUs (make bench, BenchmarkCheckpointOverlap): the
// overlap cut the counter's downtime to 0.26x and its end-to-end time to
// 0.80x of the sequential run; on one CPU the two guests would take turns.
const overlapCPUs = 2

// decideOverlap says whether guest B boots while guest A checks and dumps,
// and why.
func decideOverlap(want string, accel vm.Accel, noRestore bool, cpus int) (bool, string) {
	switch {
	case noRestore:
		return false, "--no-restore: no restore guest"
	case want == overlapOn:
		return true, "--overlap on"
	case want == overlapOff:
		return false, "--overlap off"
	case accel.Name == vm.AccelKVM:
		return true, "KVM: a second guest boots without slowing the first"
	case cpus >= overlapCPUs:
		return true, fmt.Sprintf("TCG on %d CPUs: each guest has CPUs of its own", cpus)
	}
	return false, fmt.Sprintf("TCG on %d CPUs: two guests would share them and slow the dump (--overlap on forces it)", cpus)
}

// hostCPUs is the number of CPUs kata-cr may use.
func hostCPUs() int { return runtime.NumCPU() }

// stopwatch times a checkpoint on the host's clock, the only clock both
// guests share: the stages the guests announce, the freeze, the save and
// the end of the restore.
type stopwatch struct {
	mu                      sync.Mutex
	start                   time.Time
	freeze, saved, restored time.Time
	stages                  []reports.StageTime
}

func newStopwatch() *stopwatch { return &stopwatch{start: time.Now()} }

// event records a progress event of guest ("A" or "B").
func (s *stopwatch) event(guest string, ev agentapi.Event) {
	if s == nil || ev.Kind != agentapi.EventProgress {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stages = append(s.stages, reports.StageTime{Guest: guest, Stage: ev.Stage, Seconds: now.Sub(s.start).Seconds()})
	switch {
	case guest == "A" && ev.Stage == agentapi.StageFreeze:
		s.freeze = now
	case guest == "B" && ev.Stage == agentapi.StageRestored:
		s.restored = now
	}
}

// markSaved records that the host has saved the images.
func (s *stopwatch) markSaved() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.saved = time.Now()
	s.mu.Unlock()
}

// fill adds the host's timings to t.
func (s *stopwatch) fill(t *reports.Timing) {
	if s == nil || t == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Stages = append([]reports.StageTime(nil), s.stages...)
	if !s.saved.IsZero() {
		t.SavedSeconds = s.saved.Sub(s.start).Seconds()
	}
	if !s.restored.IsZero() {
		t.EndToEndSeconds = s.restored.Sub(s.start).Seconds()
		if !s.freeze.IsZero() {
			t.DowntimeSeconds = s.restored.Sub(s.freeze).Seconds()
		}
	}
}

// aheadGuest is guest B booting while guest A checks and dumps.
type aheadGuest struct {
	v     *vm.VM
	hello chan error
}

// bootAhead starts guest B now; its agent waits for the restore job. The
// caller must close it on every path.
func bootAhead(ctx context.Context, spec vm.BootSpec, p *progress) (*aheadGuest, error) {
	v, err := vm.Boot(ctx, spec)
	if err != nil {
		return nil, err
	}
	p.printf("booting guest B under %s now, while guest A dumps", spec.Accel.Name)
	a := &aheadGuest{v: v, hello: make(chan error, 1)}
	go func() { a.hello <- v.WaitHello(ctx) }()
	return a, nil
}

// close stops guest B (a no-op once it ran its job) and removes its files.
func (a *aheadGuest) close() {
	if a != nil {
		_ = a.v.Close()
	}
}

// restoreGuest is one run of guest B: how it boots, and the host's clock.
type restoreGuest struct {
	// ahead is guest B already booting, nil to boot it now.
	ahead *aheadGuest
	sw    *stopwatch
	// saved, when set, gives the checkpoint once the host saved it: the
	// job goes to guest B at once, before the checkpoint exists, and the
	// agent reads the manifest from the images it then gets. bundle says
	// whether the checkpoint is of a bundle.
	saved  <-chan savedImages
	bundle bool
	// tee takes guest B's data channel, for the images to stream into it
	// as they reach the host.
	tee chan<- io.Writer
	// workload is the named workload being checkpointed, announced to
	// guest B with the early job so that it builds the rootfs while it
	// waits.
	workload container.Workload
}

// restoreOutcome is what guest B sent: its report and how it booted.
type restoreOutcome struct {
	report *reports.Report
	boot   reports.Finding
}

// runRestoreGuest refuses the checkpoint when it does not fit the guest
// about to boot, else boots guest B (or takes the one booted ahead),
// streams the images to its agent and returns its report. An error is a
// refusal or a failure of the guest itself; a failed restore is a result
// in the report.
func runRestoreGuest(ctx context.Context, deps *Deps, gopt guestOptions, gst *guest, set *images.Set, p *progress, rg restoreGuest) (*restoreOutcome, error) {
	var ro agentapi.RestoreOptions
	if rg.saved != nil {
		ro.ManifestFromImages = true
		if rg.bundle {
			ro.RootfsTag = container.BundleRootfsTag
		} else {
			ro.Workload, ro.Command = rg.workload.Name, rg.workload.Args
		}
	} else {
		if err := set.Verify(gst.compat()); err != nil {
			return nil, err
		}
		ro.Manifest = set.Manifest
		if set.Manifest.Bundle != nil {
			ro.RootfsTag = container.BundleRootfsTag
		}
	}
	opts, err := json.Marshal(ro)
	if err != nil {
		return nil, err
	}
	job := agentapi.Job{Kind: agentapi.JobRestore, LoadModules: true, Verbose: gopt.Verbose, Options: opts}
	handle := func(v *vm.VM, ev agentapi.Event) error {
		rg.sw.event("B", ev)
		p.event(ev)
		if guestEventHook != nil {
			guestEventHook(v, ev)
		}
		if ev.Kind == agentapi.EventProgress && ev.Stage == agentapi.StageReceiveImages {
			conn, err := v.Data(ctx)
			if err != nil {
				return fmt.Errorf("open the data channel: %w", err)
			}
			if rg.saved != nil {
				return sendWhenSaved(ctx, conn, gst, p, rg)
			}
			if err := images.WriteTar(conn, set.Dir); err != nil {
				return fmt.Errorf("send the images to the guest: %w", err)
			}
		}
		return nil
	}
	var res *vm.Result
	if a := rg.ahead; a != nil {
		select {
		case err = <-a.hello:
			a.hello <- err
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err == nil {
			res, err = a.v.Run(ctx, job, handle)
		}
		a.close()
	} else {
		p.printf("booting guest B under %s to restore %s", gst.accel.Name, set.Dir)
		res, err = vm.RunWith(ctx, gst.bootSpec(&gopt, p), job, handle)
	}
	if err != nil {
		reportGuestError(deps, err)
		return nil, guestRunError(err, gopt.Timeout)
	}
	if res.Report == nil || res.Report.Checkpoint == nil {
		return nil, errors.New("guest agent finished without sending a restore report")
	}
	boot := gst.bootFinding(res)
	boot.ID = "guest.boot-restore"
	return &restoreOutcome{report: res.Report, boot: boot}, nil
}

// merge adds guest B's outcome to the checkpoint's report.
func (o *restoreOutcome) merge(r *reports.Report) {
	r.MergeRestore(o.report)
	r.Findings = append(r.Findings, o.boot)
}

// pendingRestore is a restore started in guest B as soon as the host saved
// the images, while guest A still finishes its job.
type pendingRestore struct {
	cancel context.CancelFunc
	done   chan struct{}
	out    *restoreOutcome
	err    error
}

// startRestore runs runRestoreGuest in the background.
func startRestore(ctx context.Context, deps *Deps, gopt guestOptions, gst *guest, set *images.Set, p *progress, rg restoreGuest) *pendingRestore {
	ctx, cancel := context.WithCancel(ctx)
	pr := &pendingRestore{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pr.done)
		pr.out, pr.err = runRestoreGuest(ctx, deps, gopt, gst, set, p, rg)
	}()
	return pr
}

// wait returns the restore's outcome once guest B has stopped.
func (pr *pendingRestore) wait() (*restoreOutcome, error) {
	<-pr.done
	return pr.out, pr.err
}

// stop cancels a restore still running and waits until its qemu is gone.
func (pr *pendingRestore) stop() {
	if pr == nil {
		return
	}
	pr.cancel()
	<-pr.done
}

// savedImages is the checkpoint the host saved, and whether its images
// also streamed into guest B as they came (the tee).
type savedImages struct {
	set  *images.Set
	teed bool
}

// sendWhenSaved gives guest B, which asked for the images before they
// existed, its data channel for the tee, waits until the host saved the
// checkpoint, then completes what B has: the manifest alone after the
// tee, the whole checkpoint otherwise; the guest reads a second tar
// stream either way. B never gets a manifest for a checkpoint the host
// did not save, so it restores nothing: the caller stops it.
func sendWhenSaved(ctx context.Context, conn net.Conn, gst *guest, p *progress, rg restoreGuest) error {
	if rg.tee != nil {
		select {
		case rg.tee <- conn:
		default:
		}
	}
	var s savedImages
	select {
	case s = <-rg.saved:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.set.Verify(gst.compat()); err != nil {
		return err
	}
	p.printf("restoring %s in guest B, booted during the dump", s.set.Dir)
	if s.teed {
		if err := images.WriteTarFiles(conn, s.set.Dir, []string{images.ManifestName}); err != nil {
			return fmt.Errorf("send the manifest to the guest: %w", err)
		}
		return nil
	}
	if err := images.WriteTar(conn, s.set.Dir); err != nil {
		return fmt.Errorf("send the images to the guest: %w", err)
	}
	if err := tar.NewWriter(conn).Close(); err != nil {
		return fmt.Errorf("send the images to the guest: %w", err)
	}
	return nil
}

// bestEffortWriter writes to w until a write fails, then drops the rest:
// the tee into guest B must never fail the save on the host.
type bestEffortWriter struct {
	w      io.Writer
	failed bool
}

func (b *bestEffortWriter) Write(p []byte) (int, error) {
	if !b.failed {
		if _, err := b.w.Write(p); err != nil {
			b.failed = true
		}
	}
	return len(p), nil
}
