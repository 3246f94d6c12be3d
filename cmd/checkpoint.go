package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

func init() { commandConstructors = append(commandConstructors, newCheckpointCmd) }

// checkpointOptions are the flags and arguments of kata-cr checkpoint.
type checkpointOptions struct {
	// Workload is the named workload; Command the argv after --.
	Workload string
	Command  []string

	AutoFix       bool
	NoRestart     bool
	AcceptLoss    bool
	RuntimeSetsid bool
	Terminal      bool
	ImagesDir     string
	NoRestore     bool
	LeaveRunning  bool
	// Bench also times raw criu next to kata-cr in the same guest.
	Bench bool
	// Prove dumps without each CRIU option first, to show CRIU agrees.
	Prove bool
	// Overlap is --overlap: auto, on or off (boot guest B during the dump).
	Overlap string
	// PreDumps is --pre-dump N.
	PreDumps int
	// Bundle is the OCI bundle directory to run (--bundle); bundle is it
	// once read.
	Bundle string
	bundle *bundleJob
	// VerifyExecBefore and VerifyExec are the commands run in the
	// container before the dump and in the restored container.
	VerifyExecBefore, VerifyExec probeList
	// Export is the checkpoint archive to write (--export FILE.tar).
	Export string

	guest guestOptions
}

func newCheckpointCmd(deps *Deps, g *globalOptions) *cobra.Command {
	return newCheckpointCmdWith(deps, g, nil)
}

// newCheckpointCmdWith builds the command; a non-nil runF replaces the run,
// so that tests can capture the parsed options.
func newCheckpointCmdWith(deps *Deps, g *globalOptions, runF func(context.Context, *checkpointOptions) error) *cobra.Command {
	o := &checkpointOptions{}
	c := &cobra.Command{
		Use:   "checkpoint [WORKLOAD] [-- COMMAND [ARG...]]",
		Short: "Checkpoint a container workload in a Kata-style guest and restore it in a fresh one",
		Long:  checkpointLong(),
		Example: `  kata-cr checkpoint --auto-fix
  kata-cr checkpoint counter --auto-fix --images-dir /tmp/counter
  kata-cr checkpoint --auto-fix -- sh -c 'while :; do sleep 1; done'
  kata-cr checkpoint nginx --auto-fix --no-restore -o json
  kata-cr checkpoint --bundle ./mybundle --auto-fix --verify-exec-before 'cat /run/state' --verify-exec '["sh","-c","test -s /run/state"]'`,
		RunE: func(c *cobra.Command, args []string) error {
			if err := o.parseArgs(args, c.ArgsLenAtDash()); err != nil {
				return err
			}
			if runF != nil {
				return runF(c.Context(), o)
			}
			return runCheckpoint(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.AutoFix, "auto-fix", false, "apply the fixes and CRIU options the checks call for, then dump")
	f.BoolVar(&o.NoRestart, "no-restart", false, "with --auto-fix, refuse to restart the workload (which loses its state) to make its init a session leader")
	f.BoolVar(&o.AcceptLoss, "accept-loss", false, "with --auto-fix, dump even when the checks predict that CRIU loses part of the workload's state (refused by default)")
	f.BoolVar(&o.RuntimeSetsid, "runtime-setsid", false, "start the init as a session leader, as runc and the Kata agent 4.1.0 do")
	f.BoolVarP(&o.Terminal, "tty", "t", false, "give the workload a terminal")
	f.StringVar(&o.ImagesDir, "images-dir", "", "write the checkpoint to this new `DIR` (default: a new directory under kata-cr's cache)")
	f.BoolVar(&o.NoRestore, "no-restore", false, "stop after the dump: do not restore in a fresh guest")
	f.BoolVar(&o.LeaveRunning, "leave-running", false, "keep the original workload running after the dump")
	f.BoolVar(&o.Prove, "prove", false, "with --auto-fix, let raw CRIU judge the prediction first: a dump with no options, then one without each CRIU option the plan adds (all leaving the workload running)")
	f.StringVar(&o.Bundle, "bundle", "", "run the OCI bundle in `DIR` (config.json and its rootfs) as Kata would, instead of a named workload")
	f.Var(&o.VerifyExecBefore, "verify-exec-before", "run `CMD` in the container before the dump to record its state, retried until it exits 0 (repeatable; "+probeSyntax+")")
	f.Var(&o.VerifyExec, "verify-exec", "run `CMD` in the restored container; the checkpoint is verified only when every one exits 0 (repeatable; "+probeSyntax+")")
	f.StringVar(&o.Export, "export", "", "also write the saved checkpoint to the new tar `FILE` in the layout checkpointctl, CRI-O and containerd read (kata-cr restore --import reads it)")
	f.StringVar(&o.Overlap, "overlap", overlapAuto, "boot the restore guest while the first one checks and dumps: `auto` (under KVM, or TCG with 2 CPUs or more), on or off")
	f.IntVar(&o.PreDumps, "pre-dump", 0, "copy the memory `N` times with CRIU pre-dumps (soft-dirty tracking) while the workload runs, so that the final dump freezes it only to copy what changed since")
	f.BoolVar(&o.Bench, "bench", false, "also time a raw criu dump and restore of the workload in the same guest")
	_ = f.MarkHidden("bench")
	o.guest.addFlags(f, true)
	return c
}

// checkpointLong is checkpoint's help text; it lists the registered
// workloads.
func checkpointLong() string {
	return `checkpoint boots a Kata-style guest, starts WORKLOAD in it as a container the
way the Kata agent does, from an OCI runtime spec (the one containerd's CRI
plugin would write for it: own pid, mount, uts, ipc and cgroup namespaces, a
cgroup v2 of its own, proc, a /dev tmpfs, devpts, /dev/shm, /dev/mqueue, a
read-only sysfs and cgroup, masked and read-only paths, capabilities and
rlimits, the sandbox's /etc/hosts, /etc/hostname and /etc/resolv.conf
bind-mounted, a non-terminal init that is not a session leader), runs every
check on the guest and on the live workload, and predicts the dump before it
tries one.

--bundle DIR runs a user's OCI bundle instead (config.json and its rootfs,
which the guest gets as a read-only virtio-9p share under an overlay, so the
bundle is never written): process.args, env, cwd, terminal and user come
from config.json, and a key kata-cr does not support is refused before any
boot, naming the key. --verify-exec-before CMD runs in the container before
the dump to record its state (retried until it exits 0); --verify-exec CMD
runs in the restored container, in its namespaces as the agent's exec does,
and the checkpoint is verified only when every one exits 0. CMD is ` + probeSyntax + `.

Without --auto-fix it prints the plan (the fixes and CRIU options it would
use) and tries a plain dump anyway, to compare the prediction with CRIU; a
failed dump leaves the workload running, and the report says so.
With --auto-fix it loads the guest's modules, restarts the workload with its
init a session leader when that is what blocks the dump (its in-memory state
since the start is lost; --no-restart refuses instead), declares the bind
mounts external, adds the CRIU options the checks ask for, dumps, verifies the
images and copies them with the container's changed files to --images-dir.
Unless --no-restore it then restores them in a fresh guest and verifies that
the workload carried on. The workload is never lost: when the dump stopped
it (no --leave-running) and its images cannot be saved (the images
directory fails, the images do not match the frozen tree, the host does not
answer), the agent restores it in place in the first guest from its own
copy of the images, and the report says so. The manifest records the
--include files with their checksums, so kata-cr restore rebuilds the same
guest image without them.

Workloads: ` + strings.Join(container.Names(), ", ") + ` (default ` + container.DefaultWorkload + `), or any command of the
guest image after -- (busybox applets, and files added with --include).

Exit codes: 0 everything asked for succeeded; 1 kata-cr could not do its
work (a guest failure, an images directory it refuses); 2 bad command line
(unknown workload, a command not in the image, an images directory that
cannot be written, a bundle key kata-cr does not support); 3 the dump, the
restore or its verification failed.`
}

// parseArgs reads WORKLOAD or -- COMMAND; dash is cobra's ArgsLenAtDash.
func (o *checkpointOptions) parseArgs(args []string, dash int) error {
	switch {
	case dash >= 0:
		if dash > 0 {
			return usagef("give a workload name or a command after --, not both (%q and %q)", strings.Join(args[:dash], " "), strings.Join(args[dash:], " "))
		}
		if len(args) == 0 {
			return usagef("-- needs a command to run, such as -- sleep 3600")
		}
		o.Command = append([]string(nil), args...)
	case len(args) > 1:
		return usagef("one workload at a time, got %q: put a command after --", strings.Join(args, " "))
	case len(args) == 1:
		o.Workload = args[0]
	}
	if o.Prove && !o.AutoFix {
		return usagef("--prove proves the fixes of --auto-fix: add --auto-fix")
	}
	switch o.Overlap {
	case "", overlapAuto, overlapOn, overlapOff:
	default:
		return usagef("--overlap %q: give auto, on or off", o.Overlap)
	}
	if o.PreDumps < 0 || o.PreDumps > agentapi.MaxPreDumps {
		return usagef("--pre-dump %d: give 0 to %d pre-dumps", o.PreDumps, agentapi.MaxPreDumps)
	}
	if o.Bundle != "" {
		switch {
		case o.Workload != "" || len(o.Command) > 0:
			return usagef("--bundle runs the bundle's own process (process.args in config.json): give no workload name or command")
		case o.Terminal:
			return usagef("--bundle: the terminal comes from process.terminal in config.json: drop -t")
		}
	}
	return nil
}

// workload resolves the workload the options name.
func (o *checkpointOptions) workload() (container.Workload, error) {
	if o.bundle != nil {
		return container.FromBundle(o.bundle.Spec, container.BundleRootfsTag), nil
	}
	w, err := container.LookupWorkload(o.Workload, o.Command)
	if err != nil {
		return w, usageError{err}
	}
	return w, nil
}

// validate checks everything that can be checked before a guest boots:
// the workload, that its command is in the image, the guest flags and that
// the images directory can be written. It adds the workload's own binaries
// (nginx, redis-server) to the image.
func (o *checkpointOptions) validate() error {
	if o.Bundle != "" && o.bundle == nil {
		b, err := loadBundle(o.Bundle)
		if err != nil {
			return err
		}
		o.bundle = b
	}
	w, err := o.workload()
	if err != nil {
		return err
	}
	if err := o.guest.includeWorkload(w); err != nil {
		return err
	}
	if err := o.guest.validate(); err != nil {
		return err
	}
	if len(o.Command) > 0 {
		if err := o.checkCommandInImage(o.Command[0]); err != nil {
			return err
		}
	}
	if o.ImagesDir == "" {
		o.ImagesDir = filepath.Join(kernel.CacheDir(), "checkpoints", w.Name+"-"+time.Now().UTC().Format("20060102-150405.000"))
	}
	abs, err := filepath.Abs(o.ImagesDir)
	if err != nil {
		return usagef("--images-dir %s: %v", o.ImagesDir, err)
	}
	o.ImagesDir = abs
	if o.Export != "" {
		if o.Export, err = checkExportTarget(o.Export); err != nil {
			return err
		}
	}
	return checkImagesDirWritable(abs)
}

// includeWorkload adds the binaries a workload needs beyond busybox (nginx,
// redis-server) to the guest image, from this machine.
func (o *guestOptions) includeWorkload(w container.Workload) error {
	files, err := w.HostFiles()
	if err != nil {
		return err
	}
	for _, p := range sortedFiles(files) {
		if o.includes(p) {
			continue
		}
		// The guest looks the binary up by name: put the file itself at
		// the path, not a link to a target the image would lack
		// (/usr/bin/redis-server is a link to redis-check-rdb).
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("workload %s: %w", w.Name, err)
		}
		if err := o.Include.Set(real + ":" + p); err != nil {
			return err
		}
	}
	return nil
}

// includes reports whether an --include already puts a file at guest path
// p.
func (o *guestOptions) includes(p string) bool {
	for _, inc := range o.Include.List() {
		if e, err := guestimage.ParseInclude(inc); err == nil && e.Guest == p {
			return true
		}
	}
	return false
}

// checkCommandInImage refuses, before any boot, a command that the
// container cannot run: it must be a busybox applet, a program every guest
// image ships (kata-cr-testload) or a file added with --include (by its
// guest path, or by its name when it lands in PATH).
func (o *checkpointOptions) checkCommandInImage(name string) error {
	if _, ok := container.ImageBinary(name); ok {
		return nil
	}
	var guestPaths []string
	for _, inc := range o.guest.Include.List() {
		if e, err := guestimage.ParseInclude(inc); err == nil {
			guestPaths = append(guestPaths, e.Guest)
		}
	}
	applets, err := busyboxAppletPaths()
	if err != nil {
		return err
	}
	inPath := map[string]bool{}
	for _, d := range filepath.SplitList(container.DefaultPath) {
		inPath[d] = true
	}
	for _, a := range applets {
		if name == a || (!strings.Contains(name, "/") && path.Base(a) == name && inPath[path.Dir(a)]) {
			return nil
		}
	}
	for _, g := range guestPaths {
		if name == g || (!strings.Contains(name, "/") && path.Base(g) == name && inPath[path.Dir(g)]) {
			return nil
		}
	}
	return usagef("command %q is not in the guest image: use a busybox applet, or add your program with --include HOST_PATH[:GUEST_PATH] (in %s, or give its full guest path)", name, container.DefaultPath)
}

// busyboxAppletPaths lists the absolute paths of busybox's applets as the
// container's rootfs has them, from the busybox the image ships.
func busyboxAppletPaths() ([]string, error) {
	bb := ""
	for _, c := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(c); err == nil {
			bb = c
			break
		}
	}
	if bb == "" {
		return nil, errors.New("busybox not found: install busybox-static (apt-get install busybox-static)")
	}
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets with %s --list-full: %w", bb, err)
	}
	list := []string{container.BusyboxPath}
	for _, l := range strings.Fields(string(out)) {
		list = append(list, "/"+strings.TrimPrefix(l, "/"))
	}
	return list, nil
}

// checkImagesDirWritable fails before any boot when the checkpoint could
// not be written to dir: it exists and is not an empty directory, or its
// parent cannot be created or written.
func checkImagesDirWritable(dir string) error {
	return checkDirWritable("--images-dir", dir)
}

// checkDirWritable is checkImagesDirWritable for the directory of flag.
func checkDirWritable(flag, dir string) error {
	fi, err := os.Lstat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return usagef("%s %s: exists and is not a directory: give a new directory", flag, dir)
	case err == nil:
		entries, err := os.ReadDir(dir)
		if err != nil {
			return usagef("%s %s: %v", flag, dir, errors.Unwrap(err))
		}
		if len(entries) > 0 {
			return usagef("%s %s: not empty: give a new directory (a checkpoint never overwrites another)", flag, dir)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return usagef("%s %s: %v", flag, dir, errors.Unwrap(err))
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return usagef("%s %s: cannot create %s: %v: give a writable directory", flag, dir, parent, errors.Unwrap(err))
	}
	probe, err := os.MkdirTemp(parent, ".kata-cr-probe-")
	if err != nil {
		return usagef("%s %s: %s is not writable: %v: give a writable directory", flag, dir, parent, errors.Unwrap(err))
	}
	if err := os.Remove(probe); err != nil {
		return fmt.Errorf("remove the write probe: %w", err)
	}
	return nil
}

// runCheckpoint boots guest A for the checkpoint job, saves the images the
// agent streams back, and unless --no-restore restores them in guest B.
func runCheckpoint(ctx context.Context, deps *Deps, g *globalOptions, o *checkpointOptions) error {
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		return err
	}
	w, _ := o.workload()
	ctx, stop := signalContext(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.guest.Timeout)
	defer cancel()

	p := newProgress(deps, o.guest.Verbose)
	gst, err := prepareGuest(ctx, &o.guest, p)
	if err != nil {
		return err
	}
	job, err := o.job()
	if err != nil {
		return err
	}
	p.printf("booting guest A under %s to checkpoint %s", gst.accel.Name, w.Name)
	includes, err := o.guest.includeRecords()
	if err != nil {
		return err
	}
	if o.bundle != nil {
		gst.shares = append(gst.shares, o.bundle.share())
	}
	overlap, overlapWhy := decideOverlap(o.Overlap, gst.accel, o.NoRestore, hostCPUs())
	sw := newStopwatch()
	h := &checkpointEvents{ctx: ctx, p: p, dir: o.ImagesDir, includes: includes, bundle: o.bundle, sw: sw}
	var restoring *pendingRestore
	if overlap {
		ahead, err := bootAhead(ctx, gst.bootSpec(&o.guest, p), p)
		if err != nil {
			reportGuestError(deps, err)
			return guestRunError(err, o.guest.Timeout)
		}
		defer ahead.close()
		restoring = o.restoreAhead(ctx, deps, gst, p, h, ahead, w)
		defer restoring.stop()
	}
	r, err := gst.runCheckpointJob(ctx, deps, &o.guest, p, job, h.handle)
	if err != nil {
		return err
	}
	cp := r.Checkpoint
	o.record(r, h, sw, overlap, overlapWhy)
	saved := h.saved
	if cp.DumpOK && saved == nil {
		r.Findings = append(r.Findings, notSavedFinding(cp, h.saveErr, o.ImagesDir))
		return render(deps, g, r)
	}
	if saved != nil {
		cp.ImagesDir, cp.ImageBytes = saved.Dir, saved.Size()
		if o.Export != "" {
			exportCheckpoint(r, saved, o.Export)
		}
	}
	if !cp.DumpOK || o.NoRestore {
		return render(deps, g, r)
	}
	var out *restoreOutcome
	if restoring != nil {
		out, err = restoring.wait()
	} else {
		out, err = runRestoreGuest(ctx, deps, o.guest, gst, saved, p, restoreGuest{sw: sw})
	}
	if err != nil {
		// The checkpoint itself is saved: report it with why the restore
		// did not happen, rather than lose the report.
		cp.Error = "restore: " + err.Error()
	} else {
		out.merge(r)
	}
	if cp.Timing != nil {
		sw.fill(cp.Timing)
	}
	return render(deps, g, r)
}

// restoreAhead gives guest B, booted ahead, its restore job as soon as it
// is up and gets ready; the images follow as they reach the host, and the
// manifest once they are saved, while guest A still sends its report and
// powers off.
func (o *checkpointOptions) restoreAhead(ctx context.Context, deps *Deps, gst *guest, p *progress, h *checkpointEvents, ahead *aheadGuest, w container.Workload) *pendingRestore {
	saved := make(chan savedImages, 1)
	tee := make(chan io.Writer, 1)
	h.onSaved = func(set *images.Set, teed bool) { saved <- savedImages{set: set, teed: teed} }
	h.tee = tee
	return startRestore(ctx, deps, o.guest, gst, nil, p, restoreGuest{ahead: ahead, sw: h.sw, saved: saved, tee: tee, bundle: o.bundle != nil, workload: w})
}

// job is the checkpoint job guest A runs.
func (o *checkpointOptions) job() (agentapi.Job, error) {
	co := agentapi.CheckpointOptions{
		Workload: o.Workload, Command: o.Command, Terminal: o.Terminal, RuntimeSetsid: o.RuntimeSetsid,
		NoRestart: o.NoRestart, AcceptLoss: o.AcceptLoss, LeaveRunning: o.LeaveRunning, Bench: o.Bench, Prove: o.Prove, PreDumps: o.PreDumps,
		VerifyExecBefore: o.VerifyExecBefore.Argvs(), VerifyExec: o.VerifyExec.Argvs(),
		Bundle: o.bundleOptions(),
	}
	if checkpointJobHook != nil {
		checkpointJobHook(&co)
	}
	jobOpts, err := json.Marshal(co)
	if err != nil {
		return agentapi.Job{}, fmt.Errorf("encode the checkpoint job: %w", err)
	}
	return agentapi.Job{Kind: agentapi.JobCheckpoint, Fix: o.AutoFix, Verbose: o.guest.Verbose, Options: jobOpts}, nil
}

// record completes guest A's report with what the host saw: whether a
// restore follows, the dump log, the timing and the benchmark.
func (o *checkpointOptions) record(r *reports.Report, h *checkpointEvents, sw *stopwatch, overlap bool, overlapWhy string) {
	cp := r.Checkpoint
	cp.WantRestore = !o.NoRestore
	cp.DumpLog = h.dumpLog
	if cp.Timing != nil {
		cp.Timing.Overlap, cp.Timing.OverlapReason = overlap, overlapWhy
		sw.fill(cp.Timing)
	}
	if b := h.bench; b != nil {
		r.Findings = append(r.Findings, benchFinding(b))
		cp.Bench = &reports.Bench{KataCRDumpSeconds: b.KataCRDump, KataCRRestoreSeconds: b.KataCRRestore,
			RawDumpSeconds: b.RawDump, RawRestoreSeconds: b.RawRestore, RawDumpCommand: b.RawDumpCommand}
	}
}

// checkpointEvents handles what guest A sends while it checkpoints: it
// saves the images and answers whether they were saved, and keeps the
// benchmark.
type checkpointEvents struct {
	ctx      context.Context
	p        *progress
	dir      string
	includes []images.Include
	bundle   *bundleJob
	saved    *images.Set
	saveErr  error
	bench    *agentapi.BenchResult
	// dumpLog is where CRIU's log of a failed dump was kept.
	dumpLog string
	// sw times the guest's stages; onSaved, when set, runs once the
	// images are saved, saying whether they also went to tee.
	sw      *stopwatch
	onSaved func(set *images.Set, teed bool)
	// tee offers guest B's data channel: the images go there as they
	// arrive, besides the checkpoint directory.
	tee <-chan io.Writer
}

func (h *checkpointEvents) handle(v *vm.VM, ev agentapi.Event) error {
	h.sw.event("A", ev)
	h.p.event(ev)
	if guestEventHook != nil {
		guestEventHook(v, ev)
	}
	if ev.Kind != agentapi.EventResult {
		return nil
	}
	switch ev.Stage {
	case agentapi.ResultImages:
		// Guest B, when it waits already, gets the images as they come.
		var tee *bestEffortWriter
		var teeW io.Writer
		select {
		case w := <-h.tee:
			tee = &bestEffortWriter{w: w}
			teeW = tee
		default:
		}
		h.saved, h.saveErr = saveImages(h.ctx, v, h.dir, ev.Data, h.includes, h.bundle, h.p, teeW)
		answer := agentapi.ImagesSaved{OK: h.saveErr == nil}
		if h.saveErr != nil {
			answer.Error = h.saveErr.Error()
			h.p.printf("could not save the checkpoint: %v", h.saveErr)
		} else {
			answer.Dir = h.saved.Dir
			h.sw.markSaved()
			h.p.printf("checkpoint saved in %s (%d bytes)", h.saved.Dir, h.saved.Size())
		}
		// The agent keeps the workload's only copy until it knows: told
		// that the save failed, it puts the workload back.
		if err := v.Send(agentapi.HostMessage{Kind: agentapi.HostImagesSaved, Saved: &answer}); err != nil {
			return fmt.Errorf("tell the guest whether the images were saved: %w", err)
		}
		if h.saveErr == nil && h.onSaved != nil {
			h.onSaved(h.saved, tee != nil && !tee.failed)
		}
	case agentapi.ResultDumpLog:
		var l agentapi.DumpLog
		if err := json.Unmarshal(ev.Data, &l); err != nil {
			return fmt.Errorf("read the dump log from the guest: %w", err)
		}
		p, err := images.WriteDumpLog(h.dir, []byte(l.Text))
		if err != nil {
			h.p.printf("could not keep CRIU's dump log: %v", err)
			return nil
		}
		h.dumpLog = p
		h.p.printf("CRIU's dump log is in %s", p)
	case agentapi.ResultBench:
		h.bench = &agentapi.BenchResult{}
		if err := json.Unmarshal(ev.Data, h.bench); err != nil {
			return fmt.Errorf("read the benchmark from the guest: %w", err)
		}
	}
	return nil
}

// notSavedFinding says why a successful dump left no checkpoint.
func notSavedFinding(cp *reports.Checkpoint, saveErr error, dir string) reports.Finding {
	f := reports.Finding{ID: "checkpoint.saved", Category: "checkpoint", Level: reports.Required, Status: reports.Fail,
		Summary: "the dump succeeded but no checkpoint was saved"}
	switch {
	case saveErr != nil:
		f.Summary = "the dump succeeded but the checkpoint could not be saved in " + dir
		f.Reason = saveErr.Error()
	case cp.Error != "":
		f.Reason = cp.Error
	default:
		f.Reason = "the guest sent no images"
	}
	if cp.Error == "" {
		cp.Error = f.Summary + ": " + f.Reason
	}
	return f
}

// checkpointJobHook may change a checkpoint job before it is sent; the
// fault tests use it to inject a fault in the guest.
var checkpointJobHook func(*agentapi.CheckpointOptions)

// guestEventHook sees every event of the checkpoint and restore guests;
// the fault tests use it to kill qemu at a chosen stage.
var guestEventHook func(v *vm.VM, ev agentapi.Event)

// writeImages saves the images the agent streams; tests replace it to
// make the save fail after the dump.
var writeImages = func(dir string, m images.Manifest, r io.Reader) (*images.Set, error) {
	return images.Write(dir, m, images.FromTar(r))
}

// saveImages writes the images the agent announced with data and streams
// on the data channel into dir, and as they come to tee when it is not
// nil (a bestEffortWriter: a failing tee must never fail the save). On
// failure it keeps draining the channel, so that the agent finishes
// sending and reads the answer.
func saveImages(ctx context.Context, vm *vm.VM, dir string, data []byte, includes []images.Include, bundle *bundleJob, p *progress, tee io.Writer) (*images.Set, error) {
	var ir agentapi.ImagesReady
	if err := json.Unmarshal(data, &ir); err != nil {
		return nil, fmt.Errorf("read the images' manifest from the guest: %w", err)
	}
	conn, err := vm.Data(ctx)
	if err != nil {
		return nil, fmt.Errorf("open the data channel: %w", err)
	}
	ir.Manifest.KataCRVersion = Version
	ir.Manifest.Includes = includes
	if bundle != nil {
		bundle.record(&ir.Manifest)
	}
	var r io.Reader = &progressReader{r: conn, total: ir.Bytes, what: "copying the images", p: p}
	if tee != nil {
		r = io.TeeReader(r, tee)
	}
	set, err := writeImages(dir, ir.Manifest, r)
	if err != nil {
		// The rest of the stream is of no use; reading it ends when the
		// guest stops and its channel closes.
		go func() { _, _ = io.Copy(io.Discard, conn) }()
		return nil, fmt.Errorf("save the checkpoint: %w", err)
	}
	return set, nil
}

// includeRecords are the files the guest image gets from this host, with
// their checksums, for the manifest: a restore rebuilds the same image
// from them.
func (o *guestOptions) includeRecords() ([]images.Include, error) {
	var out []images.Include
	for _, inc := range o.Include.List() {
		e, err := guestimage.ParseInclude(inc)
		if err != nil {
			return nil, usageError{err}
		}
		sum, err := images.SumFile(e.Host)
		if err != nil {
			return nil, usagef("--include %s: %v: give a readable file", inc, errors.Unwrap(err))
		}
		out = append(out, images.Include{Host: e.Host, Guest: e.Guest, SHA256: sum})
	}
	return out, nil
}

// fillTarget adds how the guest was booted to the agent's target.
func (gst *guest) fillTarget(r *reports.Report) {
	r.Target.Accelerator = gst.accel.Name
	r.Target.AcceleratorReason = gst.accel.Reason
	r.Target.Sources = append(r.Target.Sources, "guest kernel "+gst.kernel.Image+" ("+gst.kernel.Source+")")
}

// compat is what the guest kata-cr will boot runs: a checkpoint restores
// only there.
func (gst *guest) compat() images.Compat {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	c := images.Compat{KernelRelease: gst.kernel.Release, Arch: unix.ByteSliceToString(uts.Machine[:])}
	if gst.criu != nil {
		c.CRIUVersion = gst.criu.Version
	}
	return c
}

// restoreHalf boots guest B, restores set there and merges the restore's
// outcome into r (runRestoreGuest). An error is a refusal or a failure of
// the guest itself; a failed restore is a result in r.
func restoreHalf(ctx context.Context, deps *Deps, gopt guestOptions, gst *guest, set *images.Set, r *reports.Report, p *progress) error {
	out, err := runRestoreGuest(ctx, deps, gopt, gst, set, p, restoreGuest{})
	if err != nil {
		return err
	}
	out.merge(r)
	return nil
}

// benchFinding shows kata-cr's dump and restore next to raw criu's.
func benchFinding(b *agentapi.BenchResult) reports.Finding {
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "n/a"
		}
		return fmt.Sprintf("%+.0f%%", (a/b-1)*100)
	}
	return reports.Finding{ID: "checkpoint.bench", Category: "checkpoint", Level: reports.Optional, Status: reports.Pass,
		Summary: fmt.Sprintf("%s: kata-cr dump %.3fs, restore %.3fs; raw criu dump %.3fs, restore %.3fs (kata-cr %s / %s)",
			b.Workload, b.KataCRDump, b.KataCRRestore, b.RawDump, b.RawRestore,
			ratio(b.KataCRDump, b.RawDump), ratio(b.KataCRRestore, b.RawRestore)),
		Evidence: []string{"raw dump: " + strings.Join(b.RawDumpCommand, " ")}}
}

func sortedFiles(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// bundleOptions is the bundle for the agent's job, nil without --bundle.
func (o *checkpointOptions) bundleOptions() *agentapi.BundleOptions {
	if o.bundle == nil {
		return nil
	}
	return o.bundle.options()
}
