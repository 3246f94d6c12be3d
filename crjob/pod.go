package crjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/pod"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// podJob is a pod in this guest: the sandbox's files, volumes and shared
// namespaces, and the containers started besides the one checkpointed.
type podJob struct {
	d    *Deps
	o    agentapi.PodOptions
	root string
	sb   container.SandboxFiles
	vols map[string]string
	join []container.JoinNamespace
	ns   *container.SharedNamespaces
	// peers are the pod's other containers, running.
	peers []*podPeer
	// restored is the target restored in place.
	restored Container
	// mu guards conns, each container's connections to the others as
	// the checks last saw them.
	mu    sync.Mutex
	conns map[string][]checks.PodUnixPeer
}

// podPeer is a container of the pod other than the one checkpointed.
type podPeer struct {
	c      pod.Container
	w      container.Workload
	spec   container.Spec
	base   *container.Baseline
	ctr    Container
	before container.State
}

// Pod runs the pod o describes in this guest the way Kata's agent runs a
// sandbox (the guest's network namespace, the sandbox's /etc files, IPC
// and UTS namespaces shared unless share_ipc is false, each volume a
// directory of the sandbox bound into the containers that name it), and
// checkpoints the container o.Container alone, through the checkpoint
// job: its connections to the other containers are predicted
// (process.unix-pod-peer) and declared external. Saved, it is restored in
// place in this guest, where its peers are, each external socket given a
// new connection to the peer's address with --inherit-fd, and verified
// with its probe; each other container is verified with its own probe.
func Pod(ctx context.Context, d *Deps, o agentapi.PodOptions, fix bool) error {
	target, ok := o.Pod.Lookup(o.Container)
	if !ok && o.Container != "" {
		return fmt.Errorf("pod job: pod %s has no container %q (it has %s)", o.Pod.Name, o.Container, strings.Join(o.Pod.Names(), ", "))
	}
	pj := &podJob{d: d, o: o, root: filepath.Join(d.root(), "pod"), conns: map[string][]checks.PodUnixPeer{}}
	defer pj.stop()
	if err := pj.prepare(); err != nil {
		return err
	}
	if o.Container == "" {
		return pj.whole(ctx, fix)
	}
	for _, c := range o.Pod.Containers {
		if c.Name == target.Name {
			continue
		}
		if err := pj.startPeer(ctx, c); err != nil {
			return err
		}
	}
	w, err := container.LookupWorkload(target.Workload, target.Command)
	if err != nil {
		return err
	}
	// The other containers' state is recorded once the target is dumped
	// (and gone): what they had served it then.
	tap := &podHost{Host: d.Host, dumped: func(string) error { pj.recordPeers(ctx); return nil }}
	cd := pj.deps(target, tap)
	co := o.Checkpoint
	co.Workload, co.Command = target.Workload, target.Command
	co.VerifyExecBefore, co.VerifyExec = target.VerifyExec, target.VerifyExec
	co.LeaveRunning = false
	if err := Checkpoint(ctx, cd, co, fix); err != nil {
		return err
	}
	r := tap.report
	if r == nil || r.Checkpoint == nil {
		return errors.New("pod job: the checkpoint job sent no report")
	}
	r.Command = "checkpoint"
	cp := r.Checkpoint
	cp.WantRestore = true
	if cp.DumpOK && tap.saved {
		pj.restoreInPod(ctx, cd, target, w, tap.manifest, r)
	}
	for _, p := range pj.peers {
		r.Findings = append(r.Findings, pj.verifyPeer(ctx, p))
	}
	return d.Host.Send(agentapi.Event{Kind: agentapi.EventReport, Report: r})
}

// prepare builds the sandbox: its /etc files, a directory per volume and,
// with share_ipc, the IPC and UTS namespaces every container joins.
func (pj *podJob) prepare() error {
	if err := os.RemoveAll(pj.root); err != nil {
		return fmt.Errorf("prepare the pod: %w", err)
	}
	sb, err := pj.d.Runtime.PrepareSandbox(filepath.Join(pj.root, "sandbox"), SandboxHostname)
	if err != nil {
		return err
	}
	pj.sb = sb
	pj.vols = map[string]string{}
	for _, v := range pj.o.Pod.Volumes {
		dir := filepath.Join(pj.root, "volumes", v)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return fmt.Errorf("prepare volume %s: %w", v, err)
		}
		pj.vols[v] = dir
	}
	if pj.o.Pod.ShareIPC {
		ns, err := container.CreateSharedNamespaces(filepath.Join(pj.root, "ns"), SandboxHostname)
		if err != nil {
			return err
		}
		pj.ns = &ns
		pj.join = ns.Join()
	}
	return nil
}

// sandboxFor is the sandbox's files with the volumes c mounts.
func (pj *podJob) sandboxFor(c pod.Container) container.SandboxFiles {
	sb := pj.sb
	sb.Volumes = nil
	for _, m := range c.Mounts {
		sb.Volumes = append(sb.Volumes, container.BindMount{Source: pj.vols[m.Volume], Target: m.Path, Key: m.Volume, Dir: true})
	}
	return sb
}

// startPeer starts container c of the pod and waits until it is ready.
func (pj *podJob) startPeer(ctx context.Context, c pod.Container) error {
	w, err := container.LookupWorkload(c.Workload, c.Command)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(pj.root, "containers", c.Name, "rootfs")
	if err := container.ClearRootfs(rootfs); err != nil {
		return err
	}
	if err := pj.d.Runtime.PrepareRootfs(rootfs, w, pj.d.Guest.ExtraFiles); err != nil {
		return err
	}
	base, err := container.TakeBaseline(rootfs)
	if err != nil {
		return err
	}
	spec := container.Spec{Rootfs: rootfs, ID: "pod-" + c.Name, Args: w.Args, Hostname: SandboxHostname,
		Terminal: w.Terminal, Resources: w.Resources, Setsid: pj.o.Checkpoint.RuntimeSetsid,
		Sandbox: pj.sandboxFor(c), Join: pj.join}
	pj.d.Host.Progress("start", "starting container %s of pod %s (%s)", c.Name, pj.o.Pod.Name, strings.Join(w.Args, " "))
	ctr, err := pj.d.Runtime.Start(spec)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.Name, err)
	}
	pj.peers = append(pj.peers, &podPeer{c: c, w: w, spec: spec, base: base, ctr: ctr})
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := w.Ready(rctx, container.Probe{PID: ctr.PID()}); err != nil {
		return fmt.Errorf("container %s: %w", c.Name, err)
	}
	return nil
}

// deps are the checkpoint job's collaborators for the target container:
// a directory of its own, the pod's sandbox and namespaces, the check of
// its connections to the peers, the host tapped for the report and the
// manifest, and the replacement connections for its restore.
func (pj *podJob) deps(target pod.Container, tap *podHost) *Deps {
	cd := *pj.d
	cd.Root = filepath.Join(pj.root, "containers", target.Name)
	cd.Host = tap
	cd.Runtime = podRuntime{Runtime: pj.d.Runtime, sb: pj.sandboxFor(target), join: pj.join}
	members := func() []checks.PodMember {
		var out []checks.PodMember
		for _, p := range pj.peers {
			if p.c.Name != target.Name {
				out = append(out, checks.PodMember{Name: p.c.Name, PID: p.ctr.PID()})
			}
		}
		return out
	}
	seen := func(conns []checks.PodUnixPeer) {
		pj.mu.Lock()
		defer pj.mu.Unlock()
		pj.conns[target.Name] = conns
	}
	cd.Guest.Checks = append(slices.Clone(pj.d.Guest.Checks), checks.PodChecks(members, seen, pj.o.Container == "")...)
	cd.InheritFDs = func(dump criuopt.Set) ([]criu.InheritFD, error) { return pj.reconnect(target.Name, dump) }
	return &cd
}

// reconnect connects a new socket for each unix socket the dump declared
// external to the address its peer had, in the peer's container (through
// /proc/PID/root, where the peer's path resolves in its mount namespace),
// keyed by the dumped socket's inode for --inherit-fd.
func (pj *podJob) reconnect(name string, dump criuopt.Set) ([]criu.InheritFD, error) {
	pj.mu.Lock()
	conns := slices.Clone(pj.conns[name])
	pj.mu.Unlock()
	var out []criu.InheritFD
	for _, ino := range dump.UnixSockets {
		i := slices.IndexFunc(conns, func(c checks.PodUnixPeer) bool { return c.Inode == ino })
		if i < 0 || conns[i].Address == "" {
			closeInherited(out)
			return nil, fmt.Errorf("the dump declared unix socket inode %d external, but no peer address in the pod is known for it", ino)
		}
		c := conns[i]
		f, err := dialUnix(fmt.Sprintf("/proc/%d/root%s", c.PeerPID, c.Address))
		if err != nil {
			closeInherited(out)
			return nil, fmt.Errorf("connect a new socket to %s in container %s for socket inode %d: %w", c.Address, c.PeerContainer, ino, err)
		}
		pj.d.Host.Logf("socket:[%d] becomes a new connection to %s in container %s", ino, c.Address, c.PeerContainer)
		out = append(out, criu.InheritFD{Key: fmt.Sprintf("socket:[%d]", ino), File: f})
	}
	return out, nil
}

// dialUnix connects a unix stream socket to path and returns it as a file.
func dialUnix(path string) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect: %w", err)
	}
	return os.NewFile(uintptr(fd), "pod-connection"), nil
}

func closeInherited(fds []criu.InheritFD) {
	for _, f := range fds {
		_ = f.File.Close()
	}
}

// restoreInPod restores the saved checkpoint m of the target in place, in
// this guest, and verifies it; the report's checkpoint says how it went.
func (pj *podJob) restoreInPod(ctx context.Context, cd *Deps, target pod.Container, w container.Workload, m images.Manifest, r *reports.Report) {
	cp := r.Checkpoint
	env, _ := cd.Guest.Env(ctx)
	cr := cd.criu(env)
	if cr == nil {
		cp.Error = "restore in the pod: no criu in the guest"
		return
	}
	p := paths{root: cd.Root, rootfs: filepath.Join(cd.Root, "rootfs"), sandbox: filepath.Join(cd.Root, "sandbox"), images: filepath.Join(cd.Root, "images")}
	cp.Stage = "restore"
	cp.RestoreRan = true
	rw, err := cd.restoreWorkload(ctx, cr, m, p, pj.sandboxFor(target), "restore-in-pod")
	if rw != nil {
		cp.RestoreOptions = rw.args
		defer rw.close()
	}
	if err != nil {
		criuFailure(cp, err)
		cp.Error = "restore in the pod: " + cp.Error
		return
	}
	// The job's end kills it with the others.
	pj.restored = rw.ctr
	cp.RestoreOK, cp.RestoreSeconds, cp.RestoredPID = true, rw.res.Duration.Seconds(), rw.res.PID
	r.Findings = append(r.Findings, pj.sharedNSFinding(target.Name, rw.res.PID))
	cp.Stage = "verify"
	v, err := cd.verifyRestored(ctx, w, rw.res.PID, m.WorkloadState, rw.mapped, m.VerifyExec)
	cp.Probes = append(cp.Probes, v.probes...)
	cp.StateAfter, cp.SandboxFilesSeen = v.after, v.seen
	if err != nil {
		cp.Error = "verify the restored container: " + err.Error()
		return
	}
	cp.Verified, cp.Verification, cp.Stage = true, v.msg, "done"
	pj.d.Host.Progress("verify", "%s", v.msg)
}

// recordPeers records the state of the pod's other containers, for their
// verification.
func (pj *podJob) recordPeers(ctx context.Context) {
	for _, p := range pj.peers {
		st, err := p.w.Snapshot(ctx, container.Probe{PID: p.ctr.PID()})
		if err != nil {
			pj.d.Host.Logf("record the state of container %s: %v", p.c.Name, err)
			continue
		}
		p.before = st
	}
}

// verifyPeer checks that another container of the pod carried on through
// the checkpoint: its own probe against its state before the dump.
func (pj *podJob) verifyPeer(ctx context.Context, p *podPeer) reports.Finding {
	f := reports.Finding{ID: "pod.peer", Category: "checkpoint", Level: reports.Required, Status: reports.Fail}
	if p.before == nil {
		f.Status, f.Summary = reports.Skip, fmt.Sprintf("container %s of the pod not verified", p.c.Name)
		f.Reason = "its state was not recorded: the container was not dumped, or its probe failed then"
		return f
	}
	vctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	msg, err := p.w.Verify(vctx, container.Probe{PID: p.ctr.PID()}, p.before)
	if err != nil {
		f.Summary = fmt.Sprintf("container %s of the pod did not carry on through the checkpoint", p.c.Name)
		f.Reason = err.Error()
		return f
	}
	f.Status = reports.Pass
	f.Summary = fmt.Sprintf("container %s of the pod carried on: %s", p.c.Name, msg)
	return f
}

// stop kills the pod's containers and releases its namespaces.
func (pj *podJob) stop() {
	for _, p := range pj.peers {
		_ = p.ctr.Kill()
	}
	if pj.restored != nil {
		_ = pj.restored.Kill()
	}
	if pj.ns != nil {
		_ = container.ReleaseSharedNamespaces(*pj.ns)
	}
}

// podRuntime starts the checkpointed container in the pod: with the pod's
// sandbox files and its volumes, in the sandbox's shared namespaces.
type podRuntime struct {
	Runtime
	sb   container.SandboxFiles
	join []container.JoinNamespace
}

// PrepareSandbox gives the pod's sandbox, prepared once for all its
// containers.
func (r podRuntime) PrepareSandbox(string, string) (container.SandboxFiles, error) { return r.sb, nil }

// Start starts the container in the sandbox's shared namespaces.
func (r podRuntime) Start(spec container.Spec) (Container, error) {
	spec.Join = r.join
	return r.Runtime.Start(spec)
}

// podHost keeps the checkpoint job's report (the pod job completes and
// sends it) and the manifest of the images it saved.
type podHost struct {
	Host
	report   *reports.Report
	manifest images.Manifest
	saved    bool
	// dumped runs when the dump's images in dir are about to be sent;
	// its error keeps them from the host.
	dumped func(dir string) error
}

// Send keeps a report; other events go to the host.
func (h *podHost) Send(ev agentapi.Event) error {
	if ev.Kind == agentapi.EventReport {
		h.report = ev.Report
		return nil
	}
	return h.Host.Send(ev)
}

// SendImages sends the images to the host and keeps their manifest.
func (h *podHost) SendImages(m images.Manifest, dir string) (agentapi.ImagesSaved, error) {
	if h.dumped != nil {
		if err := h.dumped(dir); err != nil {
			return agentapi.ImagesSaved{}, err
		}
	}
	saved, err := h.Host.SendImages(m, dir)
	if err == nil && saved.OK {
		h.manifest, h.saved = m, true
	}
	return saved, err
}
