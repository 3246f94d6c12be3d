package testload

import (
	"context"
	"fmt"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
)

// ModeTraced starts a beater and keeps tracing it (PTRACE_SEIZE),
// letting its signals through.
const ModeTraced = "traced"

func init() {
	Register(Mode{Name: ModeTraced, Description: "starts a beating child and keeps tracing it (PTRACE_SEIZE)", Run: runTraced})
	registerWorkload(NewWorkload("traced", "a process that keeps tracing its beating child with ptrace ("+Name+" "+ModeTraced+")",
		ModeTraced, nil, carriedKeys(ModeTraced, beaterKeys("tracee").and(stateKeys{same: []string{"tracer_pid"}}))))
}

func runTraced(ctx context.Context, s *State, _ []string) error {
	pid, err := startSelf(nil, ModeBeater, "tracee")
	if err != nil {
		return err
	}
	seized := make(chan error, 1)
	go traceChild(pid, seized)
	if err := <-seized; err != nil {
		return err
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		kv, err := relayBeaters(ctx, "tracee")
		if err != nil {
			return nil, err
		}
		st, err := proc.New("/proc").ReadStatus(pid)
		if err != nil {
			return nil, err
		}
		return append(kv, "tracer_pid", strconv.Itoa(st.TracerPid)), nil
	})
}

// traceChild seizes pid, says so on seized, and then lets every stop of
// the tracee go on with its signal (the Go runtime of the tracee signals
// its own threads). ptrace requests must come from the tracer's thread:
// the goroutine keeps its thread for good.
func traceChild(pid int, seized chan<- error) {
	runtime.LockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		seized <- fmt.Errorf("ptrace seize %d: %w", pid, err)
		return
	}
	seized <- nil
	for {
		var ws unix.WaitStatus
		tid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			return
		}
		if ws.Stopped() {
			sig := ws.StopSignal()
			if ws.TrapCause() != -1 || sig == unix.SIGSTOP || sig == unix.SIGTRAP {
				// A group stop or an event stop: nothing to deliver.
				sig = 0
			}
			_ = unix.PtraceCont(tid, int(sig))
		}
	}
}
