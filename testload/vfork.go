package testload

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes of the pending vfork scenario.
const (
	ModeVfork = "vfork"
	// ModeVforkHold vforks a child that never execs, so that it waits in
	// vfork for good: the vfork mode's child.
	ModeVforkHold = "vfork-hold"
	// KeyVforkParent is the pid, in the container, of the process that
	// waits in vfork.
	KeyVforkParent = "vfork_parent"
)

func init() {
	Register(Mode{Name: ModeVfork, Description: "starts a child that waits for good in vfork(): its own child never execs (CRIU cannot seize a task in state D)", Run: runVfork})
	Register(Mode{Name: ModeVforkHold, Description: "vforks a child that pauses instead of exec", Helper: true, Run: runVforkHold})
	registerWorkload(WithObserver(NewWorkload("vfork", "a process with a child waiting in vfork() ("+Name+" "+ModeVfork+")", ModeVfork, nil, nil), observeVfork))
}

func runVfork(ctx context.Context, s *State, _ []string) error {
	return holdChild(ctx, s, ModeVforkHold, "D", KeyVforkParent)
}

// vforkFlags clone the way vfork(2) does: the child shares the memory and
// the parent sleeps until the child execs or exits.
const vforkFlags = syscall.CLONE_VFORK | syscall.CLONE_VM | uintptr(syscall.SIGCHLD)

// runVforkHold vforks a child that pauses forever instead of exec. The
// parent sleeps in the kernel (state D) until the child is killed; it is a
// process of its own, as nothing else of the Go runtime may run meanwhile:
// the garbage collector is off, since stopping the world would wait for a
// thread that never comes back.
func runVforkHold(context.Context, *State, []string) error {
	debug.SetGCPercent(-1)
	runtime.LockOSThread()
	pid := vforkPause()
	if pid < 0 {
		return fmt.Errorf("vfork: %w", syscall.Errno(-pid))
	}
	return nil
}

// vforkPause clones with vforkFlags; the child, on the parent's stack,
// only makes raw system calls, which touch no memory of the runtime: it
// pauses until it is killed. The parent returns the child's pid (or minus
// the errno) once the child is gone.
//
//go:nosplit
//go:norace
func vforkPause() int {
	pid, _, errno := syscall.RawSyscall6(syscall.SYS_CLONE, vforkFlags, 0, 0, 0, 0, 0)
	if errno != 0 {
		return -int(errno)
	}
	if pid == 0 {
		for {
			// ppoll of nothing without a timeout: pause(2), which
			// not every architecture has.
			syscall.RawSyscall6(syscall.SYS_PPOLL, 0, 0, 0, 0, 0, 0)
		}
	}
	return int(pid)
}

// KeyVforkState is the state of the vfork parent's waiting thread as the
// prober sees it ("D" while it waits).
const KeyVforkState = "vfork_parent_state"

// observeVfork reads the state of the init's child that vforked: "D" when
// one of its threads still waits.
func observeVfork(p container.Probe) (container.State, error) {
	fs := proc.New(procRoot(p))
	kids, err := fs.Children(p.PID)
	if err != nil || len(kids) == 0 {
		return nil, fmt.Errorf("find the vfork parent among the init's children %v: %v", kids, err)
	}
	states, err := threadStates(fs, kids[0])
	if err != nil {
		return nil, err
	}
	st := "none in D"
	for _, s := range states {
		if strings.HasPrefix(s, "D") {
			st = "D"
		}
	}
	return container.State{KeyVforkState: st}, nil
}
