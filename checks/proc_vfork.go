package checks

import (
	"context"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// procVforkCause is what CRIU does with a task that waits for its vfork
// child: it cannot stop it (the task sleeps uninterruptibly, state D, until
// the child execs or exits), waits until its --timeout runs out, and fails.
const procVforkCause = "CRIU cannot seize a task in state D: it waits until its --timeout runs out, then fails with \"Unseizable non-zombie N found, state D\""

// HangFindings are the findings whose failure means CRIU would not fail at
// once but wait until its time limit runs out: kata-cr does not hand such a
// tree to CRIU.
var HangFindings = []string{"process.vfork"}

// WouldHang returns the findings of p's blockers that make CRIU wait for
// its time limit rather than fail (HangFindings).
func WouldHang(p *reports.Prediction) []string {
	var out []string
	if p == nil {
		return nil
	}
	for _, id := range p.BlockedBy {
		for _, h := range HangFindings {
			if id == h {
				out = append(out, id)
			}
		}
	}
	return out
}

// vforkWait reports whether a task blocked in system call s, in state D,
// waits for a vfork child: vfork(2), clone(2) with CLONE_VFORK, or clone3
// (which only sleeps that long for CLONE_VFORK; glibc's posix_spawn uses
// it so).
func vforkWait(s proc.Syscall) bool {
	switch {
	case s.Running || s.Nr < 0:
		return false
	case s.Nr == sysVfork:
		return true
	case s.Nr == unix.SYS_CLONE:
		return s.Args[0]&unix.CLONE_VFORK != 0
	case s.Nr == unix.SYS_CLONE3:
		return true
	}
	return false
}

// checkProcVfork finds tasks waiting for a vfork child. Such a parent
// sleeps in the kernel, state D, until the child execs or exits; the
// signal is the state with /proc/PID/task/TID/syscall showing vfork, or
// clone with CLONE_VFORK, or clone3, as the call it is in.
func checkProcVfork(_ context.Context, t *procTree) []reports.Finding {
	var bad, ev []string
	tasks := 0
	var vanished []string
	for _, p := range t.Procs {
		tids, err := t.fs.Tasks(p.PID)
		if err != nil {
			if proc.Gone(err) {
				vanished = append(vanished, p.label())
				continue
			}
			return []reports.Finding{{Status: reports.Error, Summary: "cannot list the tasks of the tree", Reason: err.Error()}}
		}
		for _, tid := range tids {
			tasks++
			state, err := t.fs.ReadTaskState(p.PID, tid)
			if err != nil || state != "D" {
				continue
			}
			sc, err := t.fs.ReadTaskSyscall(p.PID, tid)
			if err != nil {
				if proc.Gone(err) {
					continue
				}
				return procPermSkip(err, t.fs.Path(p.PID, "task", fmt.Sprint(tid), "syscall"))
			}
			wchan, _ := t.fs.ReadTaskWchan(p.PID, tid)
			line := fmt.Sprintf("%s task %d: state D, in system call %d (args %#x), wchan %s", p.label(), tid, sc.Nr, sc.Args[0], procOrUnknown(wchan))
			if !vforkWait(sc) {
				ev = append(ev, line+": not a vfork")
				continue
			}
			bad = append(bad, fmt.Sprintf("%s task %d", p.label(), tid))
			ev = append(ev, line+": waits for its vfork child to exec or exit")
		}
	}
	ev = append(ev, procVanished(t, vanished)...)
	if len(bad) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("%s %s in vfork() for a child that has not exec'd: %s", strings.Join(bad, ", "), map[bool]string{true: "waits", false: "wait"}[len(bad) == 1], procVforkCause),
			Fix: &reports.Fix{Description: "checkpoint the workload once the vfork child has exec'd or exited (a child that never does is a bug of the workload); no CRIU option helps, " +
				"and kata-cr does not start a dump that CRIU could only give up on after its time limit"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("no task of the tree (%s) waits in vfork()", procN(tasks, "task", "tasks"))}}
}
