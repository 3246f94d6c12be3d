package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/pod"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

func init() { commandConstructors = append(commandConstructors, newPodCmd) }

// podCheckpointOptions are the flags and arguments of kata-cr pod
// checkpoint.
type podCheckpointOptions struct {
	File      string
	Container string

	AutoFix       bool
	NoRestart     bool
	AcceptLoss    bool
	RuntimeSetsid bool
	Prove         bool
	ImagesDir     string

	pod   *pod.Pod
	guest guestOptions
}

func newPodCmd(deps *Deps, g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "pod",
		Short: "Run a pod (several containers in one Kata-style guest) and checkpoint a container of it",
	}
	c.AddCommand(newPodCheckpointCmdWith(deps, g, nil))
	return c
}

// newPodCheckpointCmdWith builds pod checkpoint; a non-nil runF replaces
// the run, so that tests can capture the parsed options.
func newPodCheckpointCmdWith(deps *Deps, g *globalOptions, runF func(context.Context, *podCheckpointOptions) error) *cobra.Command {
	o := &podCheckpointOptions{}
	c := &cobra.Command{
		Use:   "checkpoint POD.toml [--container NAME]",
		Short: "Checkpoint a pod, or one container of it restored in place beside the others",
		Long: `pod checkpoint boots a Kata-style guest and runs the pod POD.toml describes
in it the way Kata's agent runs a sandbox: every container in the guest's
network namespace with the sandbox's /etc/hosts, /etc/hostname and
/etc/resolv.conf, the sandbox's IPC and UTS namespaces shared (share_ipc,
true by default as in Kubernetes; false gives each container its own), its
own pid, mount and cgroup namespaces (a shared pid namespace is not
supported), and each volume a directory of the sandbox bound into the
containers that name it (an emptyDir).

With --container NAME it checkpoints that container alone, as kata-cr
checkpoint does a workload: the checks see its unix connections to the
pod's other containers (process.unix-pod-peer: a plain dump fails with
"External socket is used"), --auto-fix declares its end of each external
(--external unix[INODE], the dumped socket's own inode), and data queued in
such a connection at the check is a predicted loss (refused without
--accept-loss). The images are saved on the host; the container is restored
in place in the same guest, where its peers are, each external socket
handed a new connection to the peer's address with --inherit-fd
fd[N]:socket:[INODE], and verified with its workload's probe and its
verify_exec commands; every other container is verified with its own probe
(pod.peer findings). --prove lets raw CRIU judge the prediction first, as
for kata-cr checkpoint.

Without --container it checkpoints the whole pod: every task of every
container is stopped (SIGSTOP) so that all are dumped as of one moment,
each container is checked and dumped on its own with --leave-running
(sibling pid namespaces are not one CRIU tree), the connections between
them declared external on both sides; the images go to --images-dir, one
complete kata-cr checkpoint per container in a subdirectory named for it,
each with the contents of the volumes it mounts, beside the pod's manifest
(pod.json: the pod and the connections between its containers). A fresh
guest then restores all the containers together, each end of each
connection given one end of a new socketpair (--inherit-fd), wakes them
(SIGCONT) and verifies each with its probe (pod.container findings).
--prove and restarts are not used for the whole pod.

The pod file (TOML):

  name = "sidecar"
  share_ipc = true            # default
  [[volume]]
  name = "shared"
  [[container]]
  name = "server"
  workload = "pod-server"     # a registered workload, or
  volumes = ["shared:/run/pod"]
  [[container]]
  name = "client"
  command = ["kata-cr-testload", "pod-client"]   # an argv
  volumes = ["shared:/run/pod"]
  verify_exec = [["cat", "/run/kata-cr-testload.state"]]

A mistake in the file is one line naming the file, the line and the key,
before anything boots (exit 2). Containers from OCI bundles are not
supported yet.

Exit codes: 0 checkpointed, restored and verified (and with --container
the other containers verified); 1 the guest failed; 2 bad command line or pod file; 3
the dump, the restore or a verification failed.`,
		Example: `  kata-cr pod checkpoint sidecar.toml --container client --auto-fix
  kata-cr pod checkpoint sidecar.toml --container client --auto-fix --prove -o json
  kata-cr pod checkpoint sidecar.toml --auto-fix --runtime-setsid`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			o.File = args[0]
			if err := o.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(c.Context(), o)
			}
			return runPodCheckpoint(c.Context(), deps, g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.Container, "container", "", "checkpoint only the container `NAME`, restored in place (default: the whole pod, restored in a fresh guest)")
	f.BoolVar(&o.AutoFix, "auto-fix", false, "apply the fixes and CRIU options the checks call for, then dump")
	f.BoolVar(&o.NoRestart, "no-restart", false, "with --auto-fix, refuse to restart the container (which loses its state) to make its init a session leader")
	f.BoolVar(&o.AcceptLoss, "accept-loss", false, "with --auto-fix, dump even when the checks predict that CRIU loses part of the container's state (refused by default)")
	f.BoolVar(&o.RuntimeSetsid, "runtime-setsid", false, "start every init as a session leader, as runc and the Kata agent 4.1.0 do")
	f.BoolVar(&o.Prove, "prove", false, "with --auto-fix, let raw CRIU judge the prediction first: a dump with no options, then one without each CRIU option the plan adds")
	f.StringVar(&o.ImagesDir, "images-dir", "", "write the container's checkpoint to this new `DIR` (default: a new directory under kata-cr's cache)")
	o.guest.addFlags(f, true)
	return c
}

// validate reads the pod file and checks the flags before any boot.
func (o *podCheckpointOptions) validate() error {
	p, err := pod.Load(o.File)
	if err != nil {
		return usageError{err}
	}
	o.pod = p
	if _, ok := p.Lookup(o.Container); o.Container != "" && !ok {
		return usagef("--container %s: pod %s has no such container (it has %s)", o.Container, p.Name, strings.Join(p.Names(), ", "))
	}
	if o.Prove && !o.AutoFix {
		return usagef("--prove proves the fixes of --auto-fix: add --auto-fix")
	}
	if o.Prove && o.Container == "" {
		return usagef("--prove judges one container's dump (a proof's failed dump wakes the tree it judged, and the whole pod must stay stopped): add --container NAME")
	}
	co := checkpointOptions{guest: o.guest}
	for _, c := range p.Containers {
		w, err := container.LookupWorkload(c.Workload, c.Command)
		if err != nil {
			return usageError{err}
		}
		if err := co.guest.includeWorkload(w); err != nil {
			return err
		}
		if len(c.Command) > 0 {
			if err := co.checkCommandInImage(c.Command[0]); err != nil {
				return err
			}
		}
	}
	o.guest = co.guest
	if err := o.guest.validate(); err != nil {
		return err
	}
	if o.ImagesDir == "" {
		name := p.Name + "-pod"
		if o.Container != "" {
			name = p.Name + "-" + o.Container
		}
		o.ImagesDir = filepath.Join(kernel.CacheDir(), "checkpoints", name+"-"+time.Now().UTC().Format("20060102-150405.000"))
	}
	abs, err := filepath.Abs(o.ImagesDir)
	if err != nil {
		return usagef("--images-dir %s: %v", o.ImagesDir, err)
	}
	o.ImagesDir = abs
	return checkImagesDirWritable(abs)
}

// runPodCheckpoint boots the guest with the pod job and saves the
// container's images it streams back.
func runPodCheckpoint(ctx context.Context, deps *Deps, g *globalOptions, o *podCheckpointOptions) error {
	if _, err := renderOptions(deps, g); err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.guest.Timeout)
	defer cancel()
	p := newProgress(deps, o.guest.Verbose)
	gst, err := prepareGuest(ctx, &o.guest, p)
	if err != nil {
		return err
	}
	po := agentapi.PodOptions{Pod: *o.pod, Container: o.Container, Checkpoint: agentapi.CheckpointOptions{
		RuntimeSetsid: o.RuntimeSetsid, NoRestart: o.NoRestart, AcceptLoss: o.AcceptLoss, Prove: o.Prove}}
	jobOpts, err := json.Marshal(po)
	if err != nil {
		return err
	}
	includes, err := o.guest.includeRecords()
	if err != nil {
		return err
	}
	what := "checkpoint container " + o.Container
	if o.Container == "" {
		what = "checkpoint all its containers"
	}
	if o.Container == "" {
		if err := os.MkdirAll(o.ImagesDir, 0o700); err != nil {
			return fmt.Errorf("create the pod's checkpoint directory: %w", err)
		}
	}
	p.printf("booting the guest under %s to run pod %s and %s", gst.accel.Name, o.pod.Name, what)
	job := agentapi.Job{Kind: agentapi.JobPod, Fix: o.AutoFix, Verbose: o.guest.Verbose, Options: jobOpts}
	h := &podEvents{checkpointEvents: checkpointEvents{ctx: ctx, p: p, dir: o.ImagesDir, includes: includes}, podDir: o.ImagesDir, sets: map[string]*images.Set{}}
	r, err := gst.runCheckpointJob(ctx, deps, &o.guest, p, job, h.handle)
	if err != nil {
		return err
	}
	cp := r.Checkpoint
	cp.DumpLog = h.dumpLog
	if o.Container == "" {
		return restorePod(ctx, deps, g, o, gst, h, r, p)
	}
	if cp.DumpOK && h.saved == nil {
		r.Findings = append(r.Findings, notSavedFinding(cp, h.saveErr, o.ImagesDir))
	}
	if h.saved != nil {
		cp.ImagesDir, cp.ImageBytes = h.saved.Dir, h.saved.Size()
	}
	return render(deps, g, r)
}

// podEvents handles what the pod's guest sends: each container's images
// go to a subdirectory of the pod's checkpoint named for it.
type podEvents struct {
	checkpointEvents
	podDir string
	cur    string
	sets   map[string]*images.Set
	conns  []agentapi.PodConnection
}

func (h *podEvents) handle(v *vm.VM, ev agentapi.Event) error {
	if ev.Kind == agentapi.EventResult {
		switch ev.Stage {
		case agentapi.ResultPodContainer:
			var c agentapi.PodContainer
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				return fmt.Errorf("read the pod's container from the guest: %w", err)
			}
			if _, ok := h.sets[c.Name]; ok || c.Name == "" || strings.ContainsAny(c.Name, "/.") {
				return fmt.Errorf("the guest announced container %q twice or under a bad name", c.Name)
			}
			h.cur, h.dir = c.Name, filepath.Join(h.podDir, c.Name)
			h.sets[c.Name] = nil
			return nil
		case agentapi.ResultPodConnections:
			if err := json.Unmarshal(ev.Data, &h.conns); err != nil {
				return fmt.Errorf("read the pod's connections from the guest: %w", err)
			}
			return nil
		}
	}
	if err := h.checkpointEvents.handle(v, ev); err != nil {
		return err
	}
	if h.cur != "" && h.saved != nil {
		h.sets[h.cur], h.saved = h.saved, nil
	}
	return nil
}

// podManifestName is the pod checkpoint's own manifest, beside a
// directory per container (each a complete kata-cr checkpoint).
const podManifestName = "pod.json"

// podManifest is what the pod checkpoint holds besides its containers'.
type podManifest struct {
	Schema      int                      `json:"schema"`
	Pod         pod.Pod                  `json:"pod"`
	Containers  []string                 `json:"containers"`
	Connections []agentapi.PodConnection `json:"connections,omitempty"`
}

// restorePod completes a whole-pod checkpoint: the pod's manifest beside
// its containers' checkpoints, then every container restored together in
// a fresh guest and verified; the restore's outcome joins the report.
func restorePod(ctx context.Context, deps *Deps, g *globalOptions, o *podCheckpointOptions, gst *guest, h *podEvents, r *reports.Report, p *progress) error {
	cp := r.Checkpoint
	pm := podManifest{Schema: 1, Pod: *o.pod, Connections: h.conns}
	var ro agentapi.PodRestoreOptions
	ro.Pod, ro.Connections = *o.pod, h.conns
	var size int64
	for _, c := range o.pod.Containers {
		set := h.sets[c.Name]
		if set == nil {
			if cp.DumpOK {
				r.Findings = append(r.Findings, notSavedFinding(cp, h.saveErr, filepath.Join(o.ImagesDir, c.Name)))
				cp.DumpOK = false
			}
			return render(deps, g, r)
		}
		if err := set.Verify(gst.compat()); err != nil {
			cp.Error = "the checkpoint of container " + c.Name + " is refused: " + err.Error()
			return render(deps, g, r)
		}
		size += set.Size()
		pm.Containers = append(pm.Containers, c.Name)
		ro.Containers = append(ro.Containers, agentapi.PodRestoreContainer{Name: c.Name, Manifest: set.Manifest})
	}
	data, err := json.MarshalIndent(pm, "", "  ")
	if err != nil {
		return err
	}
	if err := safefile.Write(filepath.Join(o.ImagesDir, podManifestName), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write the pod's manifest: %w", err)
	}
	cp.ImagesDir, cp.ImageBytes = o.ImagesDir, size
	jobOpts, err := json.Marshal(ro)
	if err != nil {
		return err
	}
	p.printf("booting a fresh guest under %s to restore pod %s", gst.accel.Name, o.pod.Name)
	job := agentapi.Job{Kind: agentapi.JobPodRestore, LoadModules: true, Verbose: o.guest.Verbose, Options: jobOpts}
	cur := ""
	handle := func(v *vm.VM, ev agentapi.Event) error {
		p.event(ev)
		switch {
		case ev.Kind == agentapi.EventResult && ev.Stage == agentapi.ResultPodContainer:
			var c agentapi.PodContainer
			if err := json.Unmarshal(ev.Data, &c); err != nil {
				return fmt.Errorf("read the pod's container from the guest: %w", err)
			}
			cur = c.Name
		case ev.Kind == agentapi.EventProgress && ev.Stage == agentapi.StageReceiveImages:
			set := h.sets[cur]
			if set == nil {
				return fmt.Errorf("the guest asked for the images of container %q, which the pod's checkpoint has not", cur)
			}
			conn, err := v.Data(ctx)
			if err != nil {
				return fmt.Errorf("open the data channel: %w", err)
			}
			if err := images.WriteTar(conn, set.Dir); err != nil {
				return fmt.Errorf("send the images of container %s to the guest: %w", cur, err)
			}
		}
		return nil
	}
	res, err := vm.RunWith(ctx, gst.bootSpec(&o.guest, p), job, handle)
	if err != nil {
		cp.Error = "restore: " + err.Error()
		return render(deps, g, r)
	}
	rr := res.Report
	if rr == nil || rr.Checkpoint == nil {
		cp.Error = "restore: the guest agent finished without sending a report"
		return render(deps, g, r)
	}
	rc := rr.Checkpoint
	cp.RestoreRan, cp.RestoreOK, cp.RestoreOptions, cp.RestoreSeconds = rc.RestoreRan, rc.RestoreOK, rc.RestoreOptions, rc.RestoreSeconds
	cp.Verified, cp.Verification, cp.StateAfter, cp.Stage = rc.Verified, rc.Verification, rc.StateAfter, rc.Stage
	cp.Probes = append(cp.Probes, rc.Probes...)
	cp.Explanations = append(cp.Explanations, rc.Explanations...)
	if rc.Error != "" {
		cp.Error = "restore: " + rc.Error
	}
	r.Findings = append(r.Findings, rr.Findings...)
	return render(deps, g, r)
}
