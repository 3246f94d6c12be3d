package crjob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/pod"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// podServing is how long the whole pod runs before it is frozen.
const podServing = 2 * time.Second

// PodVolumesTar is the file of a container's images that carries the
// contents of the pod's volumes it mounts (one directory per volume).
const PodVolumesTar = "pod-volumes.tar"

// whole checkpoints every container of the pod as of one moment: all
// started, every task of every container stopped (SIGSTOP: CRIU dumps a
// stopped task as stopped and restores it so), then each container dumped
// on its own (sibling pid namespaces are not one CRIU tree) with
// --leave-running, its connections to the others declared external on
// both sides, its images sent to the host with the volumes it mounts.
// The containers are killed once all are dumped; the host restores them
// together in a fresh guest (PodRestore).
func (pj *podJob) whole(ctx context.Context, fix bool) error {
	h := pj.d.Host
	for _, c := range pj.o.Pod.Containers {
		if err := pj.startPeer(ctx, c); err != nil {
			return err
		}
	}
	// The pod serves a moment before it is frozen, as a pod in service.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(podServing):
	}
	h.Progress("freeze", "stopping every task of the pod's %d containers (SIGSTOP), so that they are dumped as of one moment", len(pj.peers))
	for _, p := range pj.peers {
		if err := stopTree(proc.New("/proc"), p.ctr.PID()); err != nil {
			return fmt.Errorf("stop container %s: %w", p.c.Name, err)
		}
	}
	co := pj.o.Checkpoint
	// A restart would start one container anew while the others wait
	// stopped, and the proofs' failed dumps wake the tree they judged.
	co.LeaveRunning, co.NoRestart, co.Prove = true, true, false
	r := reports.New("checkpoint", pj.d.Version)
	cp := &reports.Checkpoint{Workload: "pod " + pj.o.Pod.Name, Stage: "dump", DumpOK: true, WantRestore: true,
		StateBefore: map[string]string{}}
	r.Checkpoint = cp
	r.Prediction, r.Plan = &reports.Prediction{DumpWillSucceed: true, WithOptions: true, TreeDumpable: true, EnvironmentReady: true},
		&reports.Prediction{DumpWillSucceed: true, WithOptions: true, TreeDumpable: true, EnvironmentReady: true}
	matched := true
	for _, p := range pj.peers {
		vols := pj.volumesOf(p.c)
		tap := &podHost{Host: h, dumped: func(dir string) error { return pj.writeVolumes(dir, vols) }}
		cd := pj.deps(p.c, tap)
		j := pj.startedJob(ctx, cd, co, fix, p)
		if err := h.Result(agentapi.ResultPodContainer, agentapi.PodContainer{Name: p.c.Name}); err != nil {
			return err
		}
		if err := j.checkpointStarted(ctx); err != nil {
			return err
		}
		// Stopped again should CRIU have left any task running.
		if err := stopTree(proc.New("/proc"), p.ctr.PID()); err != nil {
			h.Logf("stop container %s again: %v", p.c.Name, err)
		}
		mergePodReport(r, p.c.Name, j.r)
		c := j.cp
		ok := c.DumpOK && tap.saved
		cp.DumpOK = cp.DumpOK && ok
		if c.PredictionMatched == nil || !*c.PredictionMatched {
			matched = false
		}
		for k, v := range c.StateBefore {
			cp.StateBefore[p.c.Name+"/"+k] = v
		}
		cp.DumpSeconds += c.DumpSeconds
		cp.DumpOptions = append(cp.DumpOptions, p.c.Name+":")
		cp.DumpOptions = append(cp.DumpOptions, c.DumpOptions...)
		if !ok {
			cp.Error = fmt.Sprintf("container %s: %s", p.c.Name, orUnknown(c.Error))
			break
		}
	}
	cp.PredictionMatched = &matched
	if cp.DumpOK {
		cp.Stage = "done"
		if err := h.Result(agentapi.ResultPodConnections, pj.connections()); err != nil {
			return err
		}
	}
	return h.Send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
}

// startedJob is the checkpoint job of container p, which the pod job
// started: its steps after the start (cpJob.checkpointStarted).
func (pj *podJob) startedJob(ctx context.Context, cd *Deps, co agentapi.CheckpointOptions, fix bool, p *podPeer) *cpJob {
	co.Workload, co.Command = p.c.Workload, p.c.Command
	co.VerifyExecBefore, co.VerifyExec = p.c.VerifyExec, p.c.VerifyExec
	root := cd.root()
	j := &cpJob{d: cd, opts: co, fix: fix, w: p.w, spec: p.spec, ctr: p.ctr, sb: p.spec.Sandbox, base: p.base,
		paths: paths{root: root, rootfs: p.spec.Rootfs, sandbox: filepath.Join(root, "sandbox"), images: filepath.Join(root, "images")}}
	j.r = reports.New("checkpoint", cd.Version)
	j.cp = &reports.Checkpoint{Workload: p.w.Name, Command: p.w.Args, Stage: "preflight"}
	j.r.Checkpoint = j.cp
	j.env, j.target = cd.Guest.Env(ctx)
	j.r.Target = j.target
	return j
}

// mergePodReport adds container name's report to the pod's: its findings
// (their summaries naming the container) and its predictions.
func mergePodReport(r *reports.Report, name string, cr *reports.Report) {
	if r.Target.KernelRelease == "" {
		r.Target = cr.Target
	}
	for _, f := range cr.Findings {
		f.Summary = "container " + name + ": " + f.Summary
		r.Findings = append(r.Findings, f)
	}
	r.Actions = append(r.Actions, cr.Actions...)
	for _, pp := range [][2]*reports.Prediction{{r.Prediction, cr.Prediction}, {r.Plan, cr.Plan}} {
		into, from := pp[0], pp[1]
		if from == nil {
			continue
		}
		into.DumpWillSucceed = into.DumpWillSucceed && from.DumpWillSucceed
		into.WithOptions = into.WithOptions && from.WithOptions
		into.TreeDumpable = into.TreeDumpable && from.TreeDumpable
		into.EnvironmentReady = into.EnvironmentReady && from.EnvironmentReady
		for _, id := range from.BlockedBy {
			if !slices.Contains(into.BlockedBy, id) {
				into.BlockedBy = append(into.BlockedBy, id)
			}
		}
		for _, id := range from.Losses {
			if !slices.Contains(into.Losses, id) {
				into.Losses = append(into.Losses, id)
			}
		}
		for _, why := range from.Reasons {
			into.Reasons = append(into.Reasons, name+": "+why)
		}
	}
}

// volumesOf are the volumes container c mounts: the directory of each
// below the pod's volumes.
func (pj *podJob) volumesOf(c pod.Container) []string {
	var out []string
	for _, m := range c.Mounts {
		out = append(out, m.Volume)
	}
	return out
}

// connections pairs up what each container's checks saw: a connection
// between two containers, each end as its container's dump declared it.
func (pj *podJob) connections() []agentapi.PodConnection {
	pj.mu.Lock()
	defer pj.mu.Unlock()
	var out []agentapi.PodConnection
	seen := map[uint32]bool{}
	for _, p := range pj.peers {
		for _, c := range pj.conns[p.c.Name] {
			if seen[c.Inode] {
				continue
			}
			seen[c.Inode], seen[c.PeerInode] = true, true
			out = append(out, agentapi.PodConnection{A: p.c.Name, AInode: c.Inode, B: c.PeerContainer, BInode: c.PeerInode})
		}
	}
	return out
}

// writeVolumes writes the contents of the volumes (files, directories,
// links; a socket is bound again by the process that holds it) into
// dir/PodVolumesTar.
func (pj *podJob) writeVolumes(dir string, volumes []string) error {
	root := filepath.Join(pj.root, "volumes")
	var names []string
	for _, v := range volumes {
		err := filepath.WalkDir(filepath.Join(root, v), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.Type()&(fs.ModeSocket|fs.ModeDevice|fs.ModeIrregular) != 0 {
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			names = append(names, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			return fmt.Errorf("read volume %s: %w", v, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, PodVolumesTar), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write the pod's volumes: %w", err)
	}
	if err := images.WriteTarFiles(f, root, names); err != nil {
		f.Close()
		return fmt.Errorf("write the pod's volumes: %w", err)
	}
	return f.Close()
}

// stopTree sends SIGSTOP to every process of the tree rooted at pid and
// waits until each of its tasks is stopped.
func stopTree(fs proc.FS, pid int) error {
	_, err := fs.Walk(pid, func(p int) error {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			return fmt.Errorf("stop process %d: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		running := 0
		_, err := fs.Walk(pid, func(p int) error {
			tids, err := fs.Tasks(p)
			if err != nil {
				return err
			}
			for _, tid := range tids {
				if st, err := fs.ReadTaskState(p, tid); err == nil && st != "T" && st != "t" && st != "Z" {
					running++
				}
			}
			return nil
		})
		if err != nil || running == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d task(s) of the tree of %d did not stop within 10s", running, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// podRestoring is a container of a pod restore: its checkpoint, where it
// is restored, and what the restore gave.
type podRestoring struct {
	c     pod.Container
	w     container.Workload
	m     images.Manifest
	paths paths
	rw    *restoredWorkload
}

// PodRestore restores every container of a pod checkpoint together in
// this fresh guest: the sandbox again (its /etc files, volumes with the
// contents they had, shared namespaces), each container's images and
// changed files, then each container restored with the two ends of a new
// socketpair for each connection between them (--inherit-fd), every task
// woken (SIGCONT: they were dumped stopped) once all are restored, and
// each verified with its own probe.
func PodRestore(ctx context.Context, d *Deps, o agentapi.PodRestoreOptions) error {
	if d.Guest.LoadCRIUModules != nil {
		if err := d.Guest.LoadCRIUModules(); err != nil {
			return fmt.Errorf("load the modules CRIU needs: %w", err)
		}
	}
	pj := &podJob{d: d, o: agentapi.PodOptions{Pod: o.Pod}, root: filepath.Join(d.root(), "pod"), conns: map[string][]checks.PodUnixPeer{}}
	defer pj.stop()
	if err := pj.prepare(); err != nil {
		return err
	}
	r := reports.New("restore", d.Version)
	cp := &reports.Checkpoint{Workload: "pod " + o.Pod.Name, Stage: "receive", WantRestore: true, StateBefore: map[string]string{}, StateAfter: map[string]string{}}
	r.Checkpoint = cp
	env, target := d.Guest.Env(ctx)
	r.Target = target
	send := func() error { return d.Host.Send(agentapi.Event{Kind: agentapi.EventReport, Report: r}) }
	cr := d.criu(env)
	if cr == nil {
		cp.Error = "no criu in the guest: " + env.CRIUMissing
		return send()
	}
	var rs []*podRestoring
	for _, rc := range o.Containers {
		pr, err := pj.receiveContainer(ctx, rc)
		if err != nil {
			cp.Error = err.Error()
			return send()
		}
		rs = append(rs, pr)
		for k, v := range rc.Manifest.WorkloadState {
			cp.StateBefore[rc.Name+"/"+k] = v
		}
	}
	ends, err := socketpairs(o.Connections)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range ends {
			_ = f.Close()
		}
	}()
	cp.Stage, cp.RestoreRan = "restore", true
	for _, pr := range rs {
		cd := *d
		cd.Root = pr.paths.root
		cd.Runtime = podRuntime{Runtime: d.Runtime, sb: pj.sandboxFor(pr.c), join: pj.join}
		name := pr.c.Name
		cd.InheritFDs = func(dump criuopt.Set) ([]criu.InheritFD, error) { return inheritEnds(ends, name, dump) }
		rw, err := cd.restoreWorkload(ctx, cr, pr.m, pr.paths, pj.sandboxFor(pr.c), "restore")
		if rw != nil {
			cp.RestoreOptions = append(append(cp.RestoreOptions, name+":"), rw.args...)
			pr.rw = rw
		}
		if err != nil {
			criuFailure(cp, err)
			cp.Error = fmt.Sprintf("restore container %s: %s", name, cp.Error)
			return send()
		}
		cp.RestoreSeconds += rw.res.Duration.Seconds()
		pj.peers = append(pj.peers, &podPeer{c: pr.c, w: pr.w, ctr: rw.ctr})
	}
	cp.RestoreOK = true
	for _, pr := range rs {
		defer pr.rw.close()
		if n, err := thawTree(proc.New("/proc"), pr.rw.res.PID); err != nil {
			d.Host.Logf("wake container %s: %v", pr.c.Name, err)
		} else {
			d.Host.Logf("woke %d stopped task(s) of container %s", n, pr.c.Name)
		}
	}
	cp.Stage = "verify"
	verified := true
	var msgs []string
	for _, pr := range rs {
		v, err := d.verifyRestored(ctx, pr.w, pr.rw.res.PID, pr.m.WorkloadState, pr.rw.mapped, pr.m.VerifyExec)
		f := reports.Finding{ID: "pod.container", Category: "checkpoint", Level: reports.Required, Status: reports.Pass,
			Summary: fmt.Sprintf("container %s restored as pid %d and verified: %s", pr.c.Name, pr.rw.res.PID, v.msg)}
		if err != nil {
			verified = false
			f.Status, f.Summary, f.Reason = reports.Fail, fmt.Sprintf("container %s restored as pid %d but not verified", pr.c.Name, pr.rw.res.PID), err.Error()
		} else {
			msgs = append(msgs, pr.c.Name+": "+v.msg)
		}
		r.Findings = append(r.Findings, f, pj.sharedNSFinding(pr.c.Name, pr.rw.res.PID))
		cp.Probes = append(cp.Probes, v.probes...)
		for k, val := range v.after {
			cp.StateAfter[pr.c.Name+"/"+k] = val
		}
	}
	cp.Verified = verified
	if verified {
		cp.Stage, cp.Verification = "done", strings.Join(msgs, "; ")
	} else {
		cp.Error = "a container of the pod was not verified"
	}
	return send()
}

// receiveContainer asks the host for the images of container rc, checks
// them, and prepares its rootfs with its changed files and the volumes'
// contents it carries.
func (pj *podJob) receiveContainer(_ context.Context, rc agentapi.PodRestoreContainer) (*podRestoring, error) {
	d := pj.d
	c, ok := pj.o.Pod.Lookup(rc.Name)
	if !ok {
		return nil, fmt.Errorf("the checkpoint has container %s, which pod %s does not", rc.Name, pj.o.Pod.Name)
	}
	w, err := restoreWorkloadOf(rc.Manifest, "")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(pj.root, "containers", c.Name)
	p := paths{root: root, rootfs: filepath.Join(root, "rootfs"), sandbox: filepath.Join(root, "sandbox"), images: filepath.Join(root, "images")}
	if err := os.MkdirAll(p.images, 0o700); err != nil {
		return nil, fmt.Errorf("prepare container %s: %w", c.Name, err)
	}
	if err := d.Host.Result(agentapi.ResultPodContainer, agentapi.PodContainer{Name: c.Name}); err != nil {
		return nil, err
	}
	d.Host.Progress(agentapi.StageReceiveImages, "waiting for the images of container %s", c.Name)
	if err := d.Host.ReceiveImages(p.images); err != nil {
		return nil, err
	}
	set, err := images.Open(p.images)
	if err == nil {
		err = set.VerifyFiles()
	}
	if err != nil {
		return nil, fmt.Errorf("the images of container %s arrived damaged: %w", c.Name, err)
	}
	if err := container.ClearRootfs(p.rootfs); err != nil {
		return nil, err
	}
	if err := d.Runtime.PrepareRootfs(p.rootfs, w, d.Guest.ExtraFiles); err != nil {
		return nil, err
	}
	if err := container.ApplyRootfsDiff(p.images, p.rootfs); err != nil {
		return nil, err
	}
	if err := extractVolumes(filepath.Join(p.images, PodVolumesTar), filepath.Join(pj.root, "volumes")); err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	return &podRestoring{c: c, w: w, m: rc.Manifest, paths: p}, nil
}

// extractVolumes replays a container's PodVolumesTar into the pod's
// volumes; a checkpoint without one has nothing to replay.
func extractVolumes(tarPath, root string) error {
	f, err := os.Open(tarPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("restore the pod's volumes: %w", err)
	}
	defer f.Close()
	if err := images.ExtractTar(f, root); err != nil {
		return fmt.Errorf("restore the pod's volumes: %w", err)
	}
	return nil
}

// socketpairs makes a new connected pair for each connection between two
// containers: the end of each container, keyed "NAME/INODE".
func socketpairs(conns []agentapi.PodConnection) (map[string]*os.File, error) {
	ends := map[string]*os.File{}
	for _, c := range conns {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			for _, f := range ends {
				_ = f.Close()
			}
			return nil, fmt.Errorf("socketpair for %s and %s: %w", c.A, c.B, err)
		}
		ends[fmt.Sprintf("%s/%d", c.A, c.AInode)] = os.NewFile(uintptr(fds[0]), "pod-connection")
		ends[fmt.Sprintf("%s/%d", c.B, c.BInode)] = os.NewFile(uintptr(fds[1]), "pod-connection")
	}
	return ends, nil
}

// inheritEnds hands container name the end of each connection its dump
// declared external, keyed by its dumped inode for --inherit-fd.
func inheritEnds(ends map[string]*os.File, name string, dump criuopt.Set) ([]criu.InheritFD, error) {
	var out []criu.InheritFD
	for _, ino := range dump.UnixSockets {
		f, ok := ends[fmt.Sprintf("%s/%d", name, ino)]
		if !ok {
			return nil, fmt.Errorf("container %s: the dump declared unix socket inode %d external, but the pod's manifest has no connection for it", name, ino)
		}
		// CRIU dups the file into the restored task; ours is closed when
		// the job ends, by the restored workload or by the pairs.
		dup, err := syscall.Dup(int(f.Fd()))
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", name, err)
		}
		syscall.CloseOnExec(dup)
		out = append(out, criu.InheritFD{Key: fmt.Sprintf("socket:[%d]", ino), File: os.NewFile(uintptr(dup), "pod-connection")})
	}
	return out, nil
}

// sharedNSFinding says whether the restored container name (init pid)
// is in the sandbox's shared IPC and UTS namespaces again. CRIU restores
// the namespaces its images hold as new ones unless told to join
// (--join-ns, which kata-cr does not pass), so a restored container may
// have namespaces of its own: the finding shows it.
func (pj *podJob) sharedNSFinding(name string, pid int) reports.Finding {
	f := reports.Finding{ID: "pod.shared-namespaces", Category: "checkpoint", Level: reports.Recommended, Status: reports.Pass}
	if pj.ns == nil {
		f.Status, f.Summary, f.Reason = reports.Skip, "container "+name+": the pod shares no IPC and UTS namespaces", "share_ipc = false"
		return f
	}
	var own []string
	for _, n := range []struct{ kind, file string }{{"ipc", pj.ns.IPC}, {"uts", pj.ns.UTS}} {
		var a, b syscall.Stat_t
		if err := syscall.Stat(n.file, &a); err != nil {
			f.Status, f.Summary, f.Reason = reports.Error, "container "+name+": cannot read the sandbox's "+n.kind+" namespace", err.Error()
			return f
		}
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, n.kind), &b); err != nil {
			f.Status, f.Summary, f.Reason = reports.Error, "container "+name+": cannot read its "+n.kind+" namespace", err.Error()
			return f
		}
		f.Evidence = append(f.Evidence, fmt.Sprintf("%s: the sandbox's %s:[%d], the restored container's %s:[%d]", n.kind, n.kind, a.Ino, n.kind, b.Ino))
		if a.Ino != b.Ino {
			own = append(own, n.kind)
		}
	}
	if len(own) > 0 {
		f.Status = reports.Warn
		f.Summary = fmt.Sprintf("container %s was restored in %s namespace(s) of its own, not the sandbox's shared ones: CRIU recreates the namespaces of its images (kata-cr does not pass --join-ns)", name, strings.Join(own, " and "))
		return f
	}
	f.Summary = "container " + name + " is in the sandbox's IPC and UTS namespaces again"
	return f
}
