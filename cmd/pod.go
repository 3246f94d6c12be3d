package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/pod"
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
		Use:   "checkpoint POD.toml --container NAME",
		Short: "Checkpoint one container of a pod and restore it in place, beside the others",
		Long: `pod checkpoint boots a Kata-style guest and runs the pod POD.toml describes
in it the way Kata's agent runs a sandbox: every container in the guest's
network namespace with the sandbox's /etc/hosts, /etc/hostname and
/etc/resolv.conf, the sandbox's IPC and UTS namespaces shared (share_ipc,
true by default as in Kubernetes; false gives each container its own), its
own pid, mount and cgroup namespaces (a shared pid namespace is not
supported), and each volume a directory of the sandbox bound into the
containers that name it (an emptyDir).

It then checkpoints the container --container names alone, as kata-cr
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
before anything boots (exit 2). Containers from OCI bundles and checkpoints
of the whole pod are not supported yet.

Exit codes: 0 checkpointed, restored in place and verified, the other
containers verified; 1 the guest failed; 2 bad command line or pod file; 3
the dump, the restore or a verification failed.`,
		Example: `  kata-cr pod checkpoint sidecar.toml --container client --auto-fix
  kata-cr pod checkpoint sidecar.toml --container client --auto-fix --prove -o json`,
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
	f.StringVar(&o.Container, "container", "", "the `NAME` of the container to checkpoint")
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
	if o.Container == "" {
		return usagef("--container is required: the container of pod %s to checkpoint (%s)", p.Name, strings.Join(p.Names(), ", "))
	}
	if _, ok := p.Lookup(o.Container); !ok {
		return usagef("--container %s: pod %s has no such container (it has %s)", o.Container, p.Name, strings.Join(p.Names(), ", "))
	}
	if o.Prove && !o.AutoFix {
		return usagef("--prove proves the fixes of --auto-fix: add --auto-fix")
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
		o.ImagesDir = filepath.Join(kernel.CacheDir(), "checkpoints", p.Name+"-"+o.Container+"-"+time.Now().UTC().Format("20060102-150405.000"))
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
	p.printf("booting the guest under %s to run pod %s and checkpoint container %s", gst.accel.Name, o.pod.Name, o.Container)
	job := agentapi.Job{Kind: agentapi.JobPod, Fix: o.AutoFix, Verbose: o.guest.Verbose, Options: jobOpts}
	h := &checkpointEvents{ctx: ctx, p: p, dir: o.ImagesDir, includes: includes}
	res, err := vm.RunWith(ctx, gst.bootSpec(&o.guest, p), job, h.handle)
	if err != nil {
		reportGuestError(deps, err)
		return guestRunError(err, o.guest.Timeout)
	}
	r := res.Report
	if r == nil || r.Checkpoint == nil {
		return errors.New("guest agent finished without sending a checkpoint report")
	}
	r.Command = "checkpoint"
	gst.fillTarget(r)
	r.Findings = append(r.Findings, gst.bootFinding(res))
	cp := r.Checkpoint
	cp.DumpLog = h.dumpLog
	if cp.DumpOK && h.saved == nil {
		r.Findings = append(r.Findings, notSavedFinding(cp, h.saveErr, o.ImagesDir))
	}
	if h.saved != nil {
		cp.ImagesDir, cp.ImageBytes = h.saved.Dir, h.saved.Size()
	}
	return render(deps, g, r)
}
