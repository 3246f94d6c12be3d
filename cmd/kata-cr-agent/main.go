// Command kata-cr-agent is the kata-cr guest agent. u-root's init starts it
// as /bin/uinit in the guest that kata-cr boots. It moves the guest off the
// initramfs root, loads what it needs to talk, says hello to the host over a
// virtio-serial port, runs the one job the host sends (doctor, shell, and
// the kinds other files register), sends the results as JSON lines and
// powers the guest off. It always powers off: u-root's init panics the
// kernel when its uinit exits.
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

	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// handler runs one kind of job. It reports through s; an error it returns
// becomes an error event.
type handler func(ctx context.Context, s *session, job agentapi.Job) error

// handlers maps a job kind to its handler; each job kind's file registers
// itself in an init function.
var handlers = map[agentapi.JobKind]handler{}

func register(kind agentapi.JobKind, h handler) { handlers[kind] = h }

// ackWait bounds the wait for the host's ack of the done event.
const ackWait = 5 * time.Second

func main() {
	// A container init helper re-executed by container.Start: it never
	// returns from here.
	container.Init()
	log.SetFlags(0)
	log.SetPrefix("kata-cr-agent: ")
	// The agent powers the machine off when it is done: refuse to run
	// anywhere but in a guest booted by kata-cr.
	if !inKataCRGuest() {
		fmt.Fprintf(os.Stderr, "kata-cr-agent: runs only as the init of a guest booted by kata-cr (no %s on the kernel command line)\n", vm.GuestMarker)
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

func run() error {
	start := time.Now()
	root := "initramfs"
	if err := switchRoot(); err != nil {
		// The agent can still report; a job that runs a workload
		// refuses to on the initramfs root (session.root says which).
		log.Printf("stay on the initramfs root: %v", err)
	} else {
		root = "tmpfs"
	}

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
	loaded, err := loadModules(m.ModulesDir, m.AgentModules)
	if err != nil {
		return fmt.Errorf("load the modules the agent needs: %w", err)
	}
	if len(loaded) > 0 {
		log.Printf("loaded %v", loaded)
	}
	s, err := openSession(m, start)
	if err != nil {
		return err
	}
	defer s.close()
	s.release = release
	s.root = root
	s.machine = unix.ByteSliceToString(uts.Machine[:])

	if err := s.send(agentapi.Event{Kind: agentapi.EventHello, Agent: &agentapi.AgentInfo{
		Version: version, KernelRelease: release, Root: root,
	}}); err != nil {
		return err
	}
	var msg agentapi.HostMessage
	if err := s.dec.Decode(&msg); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	if msg.Kind != agentapi.HostJob || msg.Job == nil {
		return s.finish(fmt.Errorf("expected a job from the host, got %q", msg.Kind))
	}
	s.job = *msg.Job
	h, ok := handlers[msg.Job.Kind]
	if !ok {
		return s.finish(fmt.Errorf("unknown job kind %q", msg.Job.Kind))
	}
	log.Printf("job %s", msg.Job.Kind)
	return s.finish(runHandler(h, s, *msg.Job))
}

// runHandler turns a panicking handler into an error, so the host still
// gets an error event and a done.
func runHandler(h handler, s *session, job agentapi.Job) (err error) {
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

// finish sends the job's error (if any) and the done event, then waits for
// the host's ack so that nothing is lost when the guest stops.
func (s *session) finish(jobErr error) error {
	if jobErr != nil {
		log.Printf("job failed: %v", jobErr)
		_ = s.send(agentapi.Event{Kind: agentapi.EventError, Error: jobErr.Error()})
	}
	if err := s.send(agentapi.Event{Kind: agentapi.EventDone}); err != nil {
		return err
	}
	acked := make(chan struct{})
	go func() {
		for {
			var msg agentapi.HostMessage
			if err := s.dec.Decode(&msg); err != nil {
				return
			}
			if msg.Kind == agentapi.HostAck {
				close(acked)
				return
			}
		}
	}()
	select {
	case <-acked:
	case <-time.After(ackWait):
		log.Printf("no ack from the host within %s", ackWait)
	}
	return nil
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
		if w == vm.GuestMarker {
			return true
		}
	}
	return false
}
