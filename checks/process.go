package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// procSetsidFix is the remedy for a session outside the pid namespace.
// Only the container init being a session leader helps: CRIU refuses sid 0
// even with --shell-job, and setsid in a child changes nothing for pid 1.
// The Kata agent starts the init as the leader of its own process group,
// where setsid() fails: a setsid wrapper then forks and pid 1 exits, so the
// dependable remedy is the runtime calling setsid() before it execs the
// init (kata-cr's restart-setsid fixer does exactly that).
const procSetsidFix = "make the container init a session leader: have the runtime call setsid() for it " +
	"(Kata agent 4.1.0 and later, runc and crun always do; Kata 2.5.0 to 4.0.0 only for terminal processes, so -t also works). " +
	"A setsid wrapper in the entrypoint works only where the init does not lead its process group; wrapping a child never helps"

// ProcessChecks are the checks of the process tree rooted at Env.PID, as
// `criu dump -t PID` will walk it: namespaces, sessions, terminals, locks,
// sockets and files that CRIU refuses or needs options for. The checks of
// one Runner.Run share one reading of the tree (see procTreeOf).
func ProcessChecks() []Check {
	mk := func(id string, level reports.Level, title string, run func(context.Context, *procTree) []reports.Finding) Check {
		return Check{ID: id, Category: "process", Level: level, Title: title, Needs: []Need{NeedPID},
			Run: func(ctx context.Context, env *Env) []reports.Finding {
				t, skip := procTreeOrSkip(ctx, env)
				if skip != nil {
					return skip
				}
				return run(ctx, t)
			}}
	}
	return []Check{
		{ID: "process.pidns", Category: "process", Level: reports.Required, Needs: []Need{NeedPID},
			Title: "pid namespace of the process tree",
			Run: func(ctx context.Context, env *Env) []reports.Finding {
				t, err := procTreeOf(ctx, env)
				if err != nil {
					var nop procErrNoProcess
					if errors.As(err, &nop) {
						return []reports.Finding{{Status: reports.Error,
							Summary: fmt.Sprintf("process %d does not exist", env.PID), Reason: err.Error()}}
					}
					return []reports.Finding{{Status: reports.Error, Summary: "cannot read the process tree", Reason: err.Error()}}
				}
				return checkProcPIDNS(ctx, t)
			}},
		mk("process.session-leader", reports.Required, "session and group leaders inside the pid namespace", checkProcSession),
		mk("process.tty", reports.Required, "terminals (--shell-job)", checkProcTTY),
		mk("process.file-locks", reports.Required, "file locks (--file-locks)", checkProcLocks),
		mk("process.unix-sockets", reports.Required, "unix sockets with a peer outside the tree", checkProcUnix),
		procEnvCheck("process.unix-queued", reports.Required, "connections queued on listening unix sockets", checkProcUnixQueued),
		procEnvCheck("process.tcp", reports.Required, "established TCP connections (--tcp-established)", checkProcTCP),
		mk("process.udp-cork", reports.Required, "corked UDP sockets", checkProcUDPCork),
		procEnvCheck("process.socket-protocols", reports.Required, "inet sockets of protocols CRIU dumps (not MPTCP)", checkProcSocketProtocols),
		mk("process.inotify", reports.Recommended, "inotify watches", checkProcInotify),
		mk("process.fanotify", reports.Recommended, "fanotify marks", checkProcFanotify),
		mk("process.ptrace", reports.Required, "traced processes", checkProcPtrace),
		mk("process.userns", reports.Required, "user namespaces nested in the tree's", checkProcUserNS),
		mk("process.fd-mounts", reports.Required, "open files on mounts of the process's mount namespace", checkProcFDMounts),
		procEnvCheck("process.files", reports.Required, "file descriptors CRIU cannot dump", checkProcFiles),
		procEnvCheck("process.ghost-files", reports.Required, "deleted files held open (--ghost-limit)", checkProcGhosts),
		mk("process.link-remap", reports.Required, "open files under a removed name, linked elsewhere (--link-remap)", checkProcLinkRemap),
		mk("process.vfork", reports.Required, "tasks waiting in vfork() for their child", checkProcVfork),
		inetSocketsCheck(),
	}
}

// procTreeKey is the runMemo key of the process tree.
type procTreeKey struct{}

// procTreeOf reads the tree rooted at env.PID once per Runner.Run: the
// doctor must stay well under 100 ms on 50 processes, and the checks must
// judge the same reading. The tree and the per-process reads it caches are
// shared by checks running at once, so they must not be changed.
func procTreeOf(ctx context.Context, env *Env) (*procTree, error) {
	return memoize(ctx, procTreeKey{}, func() (*procTree, error) { return procLoadTree(env) })
}

// procTreeOrSkip returns the tree for a check, or the single finding the
// check reports instead: a skip naming the reason. Only process.pidns
// reports a missing process as an error, so that a bad PID gives one error,
// not one per check.
func procTreeOrSkip(ctx context.Context, env *Env) (*procTree, []reports.Finding) {
	t, err := procTreeOf(ctx, env)
	if err == nil {
		return t, nil
	}
	var nop procErrNoProcess
	if errors.As(err, &nop) {
		return nil, procMissingSkip(env.PID)
	}
	return nil, []reports.Finding{{Status: reports.Error, Summary: "cannot read the process tree", Reason: err.Error()}}
}

// procMissingSkip is what a check of the tree or its mounts reports when
// process pid does not exist; process.pidns alone reports that as an error.
func procMissingSkip(pid int) []reports.Finding {
	return []reports.Finding{{Status: reports.Skip,
		Summary: fmt.Sprintf("process %d does not exist", pid),
		Reason:  fmt.Sprintf("process %d does not exist (it exited, or the PID is wrong)", pid)}}
}

// procVanished is the evidence line for processes that exited meanwhile.
func procVanished(t *procTree, extra []string) []string {
	var out []string
	for _, v := range append(slices.Clone(t.Vanished), extra...) {
		out = append(out, v+" vanished during the check: not checked")
	}
	return out
}

// procPermSkip turns a permission error into the skip a check reports.
func procPermSkip(err error, what string) []reports.Finding {
	return []reports.Finding{{Status: reports.Skip, Summary: "cannot read " + what,
		Reason: fmt.Sprintf("read %s: %v: run kata-cr as root", what, err)}}
}

// procFDsOf lists the fds of every process of the tree. A process that
// exits meanwhile is added to vanished; a permission error is returned.
func procFDsOf(t *procTree, vanished *[]string) (map[*treeProc][]proc.FD, error) {
	out := map[*treeProc][]proc.FD{}
	for _, p := range t.Procs {
		fds, err := t.fds(p.PID)
		if err != nil {
			if proc.Gone(err) {
				*vanished = append(*vanished, p.label())
				continue
			}
			return nil, fmt.Errorf("list fds of %s: %w", p.label(), err)
		}
		out[p] = fds
	}
	return out, nil
}

// procFDError turns an error of procFDsOf into the check's finding.
func procFDError(err error) []reports.Finding {
	if errors.Is(err, fs.ErrPermission) {
		return procPermSkip(err, "/proc/PID/fd")
	}
	return []reports.Finding{{Status: reports.Error, Summary: "cannot read open files", Reason: err.Error()}}
}

// checkProcPIDNS reports which pid namespace the tree is in. CRIU dumps a
// pid namespace only from its init and cannot dump nested ones.
func checkProcPIDNS(_ context.Context, t *procTree) []reports.Finding {
	r := t.Root
	rootNS, err := t.nsLink(r.PID, "pid")
	if err != nil {
		if proc.Gone(err) {
			return []reports.Finding{{Status: reports.Skip, Summary: "pid namespace unknown",
				Reason: fmt.Sprintf("process %d vanished during the check", r.PID)}}
		}
		if errors.Is(err, fs.ErrPermission) {
			return procPermSkip(err, t.fs.Path(r.PID, "ns", "pid"))
		}
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read the pid namespace", Reason: err.Error()}}
	}
	self, _ := t.fs.SelfNS("pid")
	vpid := proc.Last(r.Status.NSpid)
	ev := []string{
		fmt.Sprintf("%s: ns/pid %s, NSpid %s", r.label(), rootNS, procInts(r.Status.NSpid)),
		fmt.Sprintf("kata-cr: ns/pid %s", procOrUnknown(self)),
		"tree: " + procN(len(t.Procs), "process", "processes"),
	}
	var nested []string
	for _, p := range t.Procs[1:] {
		ns, err := t.nsLink(p.PID, "pid")
		if err != nil {
			continue
		}
		if ns != rootNS {
			nested = append(nested, fmt.Sprintf("%s: ns/pid %s, NSpid %s", p.label(), ns, procInts(p.Status.NSpid)))
		}
	}
	ev = append(ev, procVanished(t, nil)...)
	switch {
	case self != "" && rootNS != self && vpid != 1:
		initPID := procFindInit(t, rootNS)
		fix := "dump the whole pid namespace from its init"
		if initPID > 0 {
			fix += fmt.Sprintf(": pass --pid %d", initPID)
		}
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("pid %d is pid %d of pid namespace %s, not its init: CRIU: \"Can't dump a pid namespace without the process init\"", r.PID, vpid, rootNS),
			Fix:     &reports.Fix{Description: fix}}}
	case len(nested) > 0:
		return []reports.Finding{{Status: reports.Fail, Evidence: append(ev, nested...),
			Summary: fmt.Sprintf("%s of the tree in nested pid namespaces: CRIU cannot dump nested pid namespaces", procN(len(nested), "process", "processes")),
			Fix:     &reports.Fix{Description: "run the workload without creating pid namespaces inside it"}}}
	case self != "" && rootNS == self:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: fmt.Sprintf("pid %d is in kata-cr's own pid namespace %s: CRIU dumps the tree without a pid namespace and restores it with the same pids", r.PID, rootNS)}}
	case vpid == 1:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: fmt.Sprintf("pid %d is pid 1 (init) of its own pid namespace %s: CRIU dumps the whole namespace", r.PID, rootNS)}}
	default:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("pid %d is pid %d of pid namespace %s, and kata-cr's own pid namespace is unknown: CRIU dumps a pid namespace only from its init", r.PID, vpid, rootNS)}}
	}
}

// procFindInit finds the host pid of the init of pid namespace ns.
func procFindInit(t *procTree, ns string) int {
	procs, err := t.proc.AllProcs()
	if err != nil {
		return 0
	}
	for _, p := range procs {
		if l, err := t.nsLink(p.PID, "pid"); err != nil || l != ns {
			continue
		}
		if st, err := t.fs.ReadStatus(p.PID); err == nil && proc.Last(st.NSpid) == 1 {
			return p.PID
		}
	}
	return 0
}

// checkProcSession is the seed's failure. CRIU's parasite asks each task
// for getsid(); inside a pid namespace a session whose leader is outside
// reads as 0, and CRIU stops: "A session leader of N(M) is outside of its
// pid namespace". No option changes that. When the tree shares CRIU's pid
// namespace instead, a root that is not its own session leader needs
// --shell-job ("The root process N is not a session leader").
func checkProcSession(_ context.Context, t *procTree) []reports.Finding {
	r := t.Root
	for _, p := range t.Procs {
		if !p.Status.HasNS {
			return []reports.Finding{{Status: reports.Error, Summary: "cannot tell sessions inside the pid namespace",
				Reason: fmt.Sprintf("%s has no NSsid/NSpgid lines (kernel older than 4.1)", t.fs.Path(p.PID, "status"))}}
		}
	}
	var ev, outside []string
	var firstBad *treeProc
	pgidOutside := 0
	rootNS, _ := t.nsLink(r.PID, "pid")
	for _, p := range t.Procs {
		// A process of a nested pid namespace has its session leader
		// outside its namespace whatever the init does: no restart
		// changes that, and process.pidns reports the namespace.
		if ns, err := t.nsLink(p.PID, "pid"); err == nil && rootNS != "" && ns != rootNS {
			ev = append(ev, fmt.Sprintf("%s: in a nested pid namespace %s (see process.pidns): not judged here", p.label(), ns))
			continue
		}
		vsid, vpgid := proc.Last(p.Status.NSsid), proc.Last(p.Status.NSpgid)
		line := fmt.Sprintf("%s: NSpid %s, NSsid %s, NSpgid %s (stat: session %d, pgrp %d)",
			p.label(), procInts(p.Status.NSpid), procInts(p.Status.NSsid), procInts(p.Status.NSpgid), p.Session, p.PGRP)
		var notes []string
		if vsid == 0 {
			notes = append(notes, fmt.Sprintf("session leader %d is outside the pid namespace", p.Session))
			outside = append(outside, p.label())
			if firstBad == nil {
				firstBad = p
			}
		} else if vsid == proc.Last(p.Status.NSpid) {
			notes = append(notes, "its own session leader")
		}
		if vpgid == 0 {
			notes = append(notes, fmt.Sprintf("process group leader %d is outside the pid namespace", p.PGRP))
			pgidOutside++
		}
		if len(notes) > 0 {
			line += ": " + strings.Join(notes, "; ")
		}
		ev = append(ev, line)
	}
	ev = append(ev, procVanished(t, nil)...)
	if firstBad != nil {
		s := fmt.Sprintf("A session leader of %d(%d) is outside of its pid namespace", firstBad.PID, proc.Last(firstBad.Status.NSpid))
		if firstBad == r {
			for _, p := range t.Procs[1:] {
				if proc.Last(p.Status.NSsid) == proc.Last(p.Status.NSpid) {
					ev = append(ev, fmt.Sprintf("%s is a session leader, but that does not help: %s keeps the outside session, and CRIU needs every process's session inside the namespace (the init itself must be the session leader)", p.label(), r.label()))
					break
				}
			}
			s += ": the container init is not a session leader"
		}
		ev = append(ev, fmt.Sprintf("%d of %s with the session outside the pid namespace; CRIU refuses sid 0 even with --shell-job", len(outside), procN(len(t.Procs), "process", "processes")))
		return []reports.Finding{{Status: reports.Fail, Summary: s, Evidence: ev,
			Fix: &reports.Fix{Description: procSetsidFix, AutoFixable: true, Fixer: FixerIDRestartSetsid}}}
	}
	if vsid, vpid := proc.Last(r.Status.NSsid), proc.Last(r.Status.NSpid); vsid != vpid {
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("The root process %d is not a session leader (its session is %d): CRIU needs --shell-job", vpid, vsid),
			Fix: &reports.Fix{Description: "dump and restore with --shell-job, or " + procSetsidFix,
				CRIU: criuopt.Set{ShellJob: true}, Restore: criuopt.Set{ShellJob: true},
				AutoFixable: true, Fixer: FixerIDCRIUOption}}}
	}
	if pgidOutside > 0 {
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: fmt.Sprintf("%s with the process group leader outside the pid namespace: restored, they get their parent's process group", procN(pgidOutside, "process", "processes")),
			Fix:     &reports.Fix{Description: procSetsidFix, AutoFixable: true, Fixer: FixerIDRestartSetsid}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("every session and process group leader of the tree (%s) is inside its pid namespace", procN(len(t.Procs), "process", "processes"))}}
}

func procInts(l []int) string {
	s := make([]string, len(l))
	for i, n := range l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, " ")
}

func procOrUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// procN counts a noun: "1 process", "3 processes".
func procN(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
