// Command kata-cr-agent is the kata-cr guest agent. u-root's init starts it
// as /bin/uinit in the guest that kata-cr boots. It loads what it needs to
// talk, moves the guest off the initramfs root, says hello to the host over
// a virtio-serial port, runs the one job the host sends, sends the results
// as JSON lines and powers the guest off. It always powers off: u-root's init panics the kernel when its uinit
// exits. The jobs themselves are library code: runtime/guest (doctor,
// shell) and crjob (checkpoint, restore).
//
// The runtime's cgroup-aware GOMAXPROCS is off: it would keep the cgroup v1
// cpu hierarchy that u-root's init mounts open for the agent's lifetime,
// and the cpu controller could not move to the cgroup v2 the containers
// run in (container.EnsureCgroup2).
//
//go:debug containermaxprocs=0
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/crjob"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/guest"
	"github.com/kata-cr/kata-cr/testload"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// handler runs one kind of job; an error it returns becomes an error
// event.
type handler func(ctx context.Context, s *guest.Session, job agentapi.Job) error

// handlers maps a job kind to its handler.
var handlers = map[agentapi.JobKind]handler{
	agentapi.JobDoctor: func(ctx context.Context, s *guest.Session, job agentapi.Job) error {
		return guest.Doctor(ctx, s, job, version)
	},
	agentapi.JobShell: guest.Shell,
	agentapi.JobCheckpoint: crJob(func(ctx context.Context, d *crjob.Deps, o agentapi.CheckpointOptions, job agentapi.Job) error {
		return crjob.Checkpoint(ctx, d, o, job.Fix)
	}),
	agentapi.JobRestore: crJob(func(ctx context.Context, d *crjob.Deps, o agentapi.RestoreOptions, job agentapi.Job) error {
		return crjob.Restore(ctx, d, o, job.LoadModules)
	}),
	agentapi.JobCorpus: crJob(func(ctx context.Context, d *crjob.Deps, o agentapi.CorpusOptions, job agentapi.Job) error {
		return crjob.Corpus(ctx, d, o, job.Fix)
	}),
	agentapi.JobPod: crJob(func(ctx context.Context, d *crjob.Deps, o agentapi.PodOptions, job agentapi.Job) error {
		return crjob.Pod(ctx, d, o, job.Fix)
	}),
	agentapi.JobPodRestore: crJob(func(ctx context.Context, d *crjob.Deps, o agentapi.PodRestoreOptions, _ agentapi.Job) error {
		return crjob.PodRestore(ctx, d, o)
	}),
	agentapi.JobCorpusRestore: crJob(func(ctx context.Context, d *crjob.Deps, o agentapi.CorpusRestoreOptions, _ agentapi.Job) error {
		return crjob.CorpusRestore(ctx, d, o)
	}),
}

// crJob is the handler of a job that runs containers: it decodes the
// job's options into O and refuses the initramfs root, which CRIU cannot
// dump.
func crJob[O any](run func(ctx context.Context, d *crjob.Deps, o O, job agentapi.Job) error) handler {
	return func(ctx context.Context, s *guest.Session, job agentapi.Job) error {
		var o O
		if err := decodeOptions(job, &o); err != nil {
			return err
		}
		if err := s.RequireTmpfsRoot(); err != nil {
			return err
		}
		return run(ctx, deps(s), o, job)
	}
}

// deps wires a checkpoint or restore job to this guest.
func deps(s *guest.Session) *crjob.Deps {
	return &crjob.Deps{
		Host: s,
		Guest: crjob.Guest{
			Release: s.Release, Machine: s.Machine, Env: s.Env,
			Checks: guest.Checks(), Fixers: guest.Fixers(), ExtraFiles: s.ExtraFiles(),
			CRIUModules: s.Manifest.CRIUModules, LoadCRIUModules: s.LoadCRIUModules,
		},
		Runtime: crjob.Kata{Cgroups: container.GuestCgroupRoot, LoadModules: s.LoadContainerModules},
		Version: version,
	}
}

func decodeOptions(job agentapi.Job, v any) error {
	if len(job.Options) == 0 {
		return nil
	}
	if err := json.Unmarshal(job.Options, v); err != nil {
		return fmt.Errorf("%s options: %w", job.Kind, err)
	}
	return nil
}

func main() {
	// A container init helper re-executed by container.Start: it never
	// returns from here.
	container.Init()
	// A test workload in a container: the image links
	// /bin/kata-cr-testload to the agent.
	if testload.Invoked(os.Args[0]) {
		os.Exit(testload.Main(os.Args, os.Stderr))
	}
	log.SetFlags(0)
	log.SetPrefix("kata-cr-agent: ")
	// The agent powers the machine off when it is done: refuse to run
	// anywhere but in a guest booted by kata-cr.
	if !inKataCRGuest() {
		fmt.Fprintf(os.Stderr, "kata-cr-agent: runs only as the init of a guest booted by kata-cr (no %s on the kernel command line)\n", agentapi.GuestMarker)
		os.Exit(2)
	}
	defer powerOff()
	defer func() {
		if p := recover(); p != nil {
			log.Printf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	if err := run(); err != nil {
		log.Printf("%v", err)
	}
}

// uptime is the kernel's CLOCK_BOOTTIME in seconds.
func uptime() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e9
}

func run() error {
	start := time.Now()
	boot := &agentapi.BootProfile{AgentStart: uptime()}
	guest.MountRun()
	if err := guest.MountMaskedDirSource(); err != nil {
		// Masked directories are then saved with tar, as CRIU does.
		log.Printf("%v", err)
	}
	// Every job runs on the tmpfs root, the doctor too: CRIU answers its
	// checks differently on the initramfs root, and the doctor checks the
	// guest a checkpoint will see.
	root := guest.RootInitramfs
	if err := guest.SwitchRoot(); err != nil {
		// The agent can still report; a job that runs a workload
		// refuses to on the initramfs root.
		log.Printf("stay on the initramfs root: %v", err)
	} else {
		root = guest.RootTmpfs
	}
	boot.RootSwitched = uptime()
	guest.EnsurePath()
	m, err := readManifest(agentapi.ManifestPath)
	if err != nil {
		return err
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	if m.KernelRelease != "" && m.KernelRelease != release {
		log.Printf("image built for kernel %s, running %s: its modules will not load", m.KernelRelease, release)
	}
	loaded, err := guest.LoadModules(m.ModulesDir, m.AgentModules)
	if err != nil {
		return fmt.Errorf("load the modules the agent needs: %w", err)
	}
	if len(loaded) > 0 {
		log.Printf("loaded %v", loaded)
	}
	boot.ModulesLoaded = uptime()
	s, err := guest.Open(m, start)
	if err != nil {
		return err
	}
	boot.PortOpen = uptime()
	defer s.Close()
	s.Release, s.Root, s.Machine = release, root, unix.ByteSliceToString(uts.Machine[:])
	if err := s.Hello(agentapi.AgentInfo{Version: version, KernelRelease: release, Root: s.Root, Boot: boot}); err != nil {
		return err
	}
	job, err := s.NextJob()
	if err != nil {
		return s.Finish(err)
	}
	h, ok := handlers[job.Kind]
	if !ok {
		return s.Finish(fmt.Errorf("unknown job kind %q", job.Kind))
	}
	log.Printf("job %s", job.Kind)
	return s.Finish(runHandler(h, s, job))
}

// runHandler turns a panicking handler into an error, so the host still
// gets an error event and a done.
func runHandler(h handler, s *guest.Session, job agentapi.Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("agent panicked: %v", p)
			log.Printf("%v\n%s", err, debug.Stack())
		}
	}()
	return h(context.Background(), s, job)
}

func readManifest(path string) (*agentapi.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	var m agentapi.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read image manifest %s: %w", path, err)
	}
	return &m, nil
}

// powerOff stops the guest; qemu, started with -no-reboot, then exits.
func powerOff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// Only reached when the power-off failed (not root, not in the
	// initial pid namespace): say so and wait for init's panic.
	log.Printf("power off: %v", errors.Join(err, errors.New("the guest keeps running")))
	for {
		time.Sleep(time.Hour)
	}
}

// inKataCRGuest reports whether the kernel was booted by kata-cr.
func inKataCRGuest() bool {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return false
	}
	for _, w := range strings.Fields(string(b)) {
		if w == agentapi.GuestMarker {
			return true
		}
	}
	return false
}
