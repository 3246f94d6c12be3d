// Package corpus holds kata-cr's workload corpus and runs it with CRIU as
// the judge: every entry is started in one guest the way Kata's agent
// starts a container, checked, dumped by raw CRIU with no options, with
// the planned options and with the plan less each option, then saved and
// restored in one fresh guest and verified by the workload's own probe.
// Each entry's result sets kata-cr's prediction beside what CRIU did; a
// difference is a disagreement.
package corpus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Entry is one workload of the corpus.
type Entry struct {
	// Name is the entry's name: its row in the truth table.
	Name string
	// Workload names the container workload (container.Workloads).
	Workload string
	// Covers says what the entry exercises.
	Covers string
	// Terminal gives the container a pty from outside (-t).
	Terminal bool
	// OldAgent starts the init as Kata's agent 2.5.0 to 4.0.0 starts a
	// process without a terminal: not a session leader. The other entries
	// start as runc and Kata's agent 4.1.0 do.
	OldAgent bool
	// Command, when set, runs this argv as the container's init instead
	// of a registered workload (Workload is then container.CommandWorkload),
	// verified when the restored init runs the same argv. Include are the
	// HOST[:GUEST] files it needs in the guest image; the caller that
	// builds the image adds them (kata-cr gate's workloads).
	Command []string
	Include []string
	// Bundle, when set, runs a user's OCI bundle instead (Workload is then
	// container.BundleWorkload): its rootfs is the virtio-9p share tagged
	// RootfsTag, which the caller adds to both guests (kata-cr gate's
	// workloads).
	Bundle    *container.Bundle
	RootfsTag string
	// VerifyExec are the entry's own probes, each an argv run in the
	// container: before the dump to record its state, and in the restored
	// container, which is verified only when every one exits 0.
	VerifyExec [][]string
}

// Entries is the corpus, in the order it runs and is shown.
var Entries = []Entry{
	{Name: "init-not-session-leader", Workload: "counter", OldAgent: true, Covers: "a shell counter started as Kata's agent before 4.1.0 starts it: the init is not a session leader"},
	{Name: "counter", Workload: "counter", Covers: "a shell counter, the init a session leader"},
	{Name: "child-session", Workload: "child-session", Covers: "a child that leads a session of its own, with a member"},
	{Name: "orphan-pgrp", Workload: "orphan-pgrp", Covers: "an orphaned process group whose leader is gone"},
	{Name: "zombie", Workload: "zombie", Covers: "an unreaped zombie child"},
	{Name: "threads", Workload: "threads", Covers: "a process of many threads"},
	{Name: "vfork", Workload: "vfork", Covers: "a parent waiting in vfork() for a child that never execs"},
	{Name: "pty", Workload: "pty", Covers: "a pty pair the workload opened itself"},
	{Name: "terminal", Workload: "counter", Terminal: true, Covers: "a terminal from outside (-t): the runtime's pty"},
	{Name: "flock", Workload: "flock", Covers: "a flock(2) lock held by util-linux flock"},
	{Name: "lock-posix", Workload: "lock-posix", Covers: "a POSIX record lock (F_SETLK)"},
	{Name: "lock-ofd", Workload: "lock-ofd", Covers: "an open file description lock (F_OFD_SETLK)"},
	{Name: "unix-pairs", Workload: "unix-pairs", Covers: "unix stream, datagram and seqpacket pairs inside the tree, data queued"},
	{Name: "unix-queued", Workload: "unix-queued", Covers: "a listening unix socket with a connection and its request queued"},
	{Name: "tcp-listen", Workload: "tcp-listen", Covers: "a listening TCP socket"},
	{Name: "tcp-established", Workload: "tcp-established", Covers: "an established TCP connection inside the tree"},
	{Name: "tcp-half-closed", Workload: "tcp-half-closed", Covers: "a TCP connection with one direction shut down"},
	{Name: "udp", Workload: "udp", Covers: "connected UDP sockets exchanging datagrams"},
	{Name: "udp-cork", Workload: "udp-cork", Covers: "a corked UDP socket with a datagram pending"},
	{Name: "netlink", Workload: "netlink", Covers: "a netlink route socket in use"},
	{Name: "packet", Workload: "packet", Covers: "a packet socket"},
	{Name: "epoll", Workload: "epoll", Covers: "an epoll instance watching descriptors"},
	{Name: "eventfd", Workload: "eventfd", Covers: "an eventfd with a count"},
	{Name: "signalfd", Workload: "signalfd", Covers: "a signalfd receiving signals"},
	{Name: "timerfd", Workload: "timerfd", Covers: "an armed periodic timerfd"},
	{Name: "inotify", Workload: "inotify", Covers: "a live inotify watch"},
	{Name: "inotify-removed", Workload: "inotify-removed", Covers: "an inotify watch on a file whose name was removed"},
	{Name: "fanotify", Workload: "fanotify", Covers: "a fanotify group with a mark"},
	{Name: "fifo", Workload: "fifo", Covers: "a FIFO with data and a device node in the container's files"},
	{Name: "ghost-small", Workload: "ghost-small", Covers: "a deleted file held open, below CRIU's ghost limit"},
	{Name: "ghost-large", Workload: "ghost-large", Covers: "a deleted file held open, above CRIU's ghost limit"},
	{Name: "ghost-sparse", Workload: "ghost-sparse", Covers: "a deleted sparse file held open, most of it holes"},
	{Name: "memfd", Workload: "memfd", Covers: "a memfd mapped and written"},
	{Name: "sysv-shm", Workload: "sysv-shm", Covers: "a SysV shared memory segment attached"},
	{Name: "sysv-sem", Workload: "sysv-sem", Covers: "a SysV semaphore set"},
	{Name: "sysv-msg", Workload: "sysv-msg", Covers: "a SysV message queue with messages"},
	{Name: "mqueue", Workload: "mqueue", Covers: "a POSIX message queue with messages"},
	{Name: "heap-256m", Workload: "heap-256m", Covers: "256 MiB of touched heap"},
	{Name: "nested-pidns", Workload: "nested-pidns", Covers: "a child in a nested pid namespace"},
	{Name: "nested-userns", Workload: "nested-userns", Covers: "a child in a nested user namespace"},
	{Name: "cgroup-limits", Workload: "cgroup-limits", Covers: "a tree in the container's cgroup with limits"},
	{Name: "seccomp", Workload: "seccomp", Covers: "a seccomp filter installed"},
	{Name: "io-uring", Workload: "io-uring", Covers: "an io_uring instance"},
	{Name: "traced", Workload: "traced", Covers: "a process traced by its parent"},
	{Name: "pidfd", Workload: "pidfd", Covers: "a pidfd of a child"},
	{Name: "nginx", Workload: "nginx", Covers: "the nginx server, master and worker"},
	{Name: "redis", Workload: "redis", Covers: "the redis server"},
}

// Select returns the entries named, in the corpus's order; all of them
// when names is empty. A name that is not an entry is an error.
func Select(names []string) ([]Entry, error) {
	if len(names) == 0 {
		return Entries, nil
	}
	var out []Entry
	for _, n := range names {
		if !slices.ContainsFunc(Entries, func(e Entry) bool { return e.Name == n }) {
			return nil, fmt.Errorf("%q is not a corpus entry: `kata-cr corpus --list` lists them", n)
		}
	}
	for _, e := range Entries {
		if slices.Contains(names, e.Name) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Check reports the entries whose workload is not registered.
func Check(entries []Entry) error {
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Name] {
			return fmt.Errorf("corpus entry %q is listed twice", e.Name)
		}
		seen[e.Name] = true
		if len(e.Command) > 0 || e.Bundle != nil {
			continue
		}
		if _, err := container.Lookup(e.Workload); err != nil {
			return fmt.Errorf("corpus entry %s: no workload %q is registered", e.Name, e.Workload)
		}
	}
	return nil
}

// CellSpec is a guest the corpus runs in: a Debian kernel series and the
// Debian suite whose CRIU it ships.
type CellSpec struct {
	Name          string
	KernelVersion string
	CRIUSuite     string
	Description   string
}

// Cells are the cells of the truth table, in its order.
var Cells = []CellSpec{
	{Name: "6.1-criu3.17", KernelVersion: "6.1", CRIUSuite: "bookworm", Description: "Debian 12's kernel 6.1 and CRIU 3.17.1"},
	{Name: "7.3-criu4.1", KernelVersion: "7.3", CRIUSuite: "trixie", Description: "kernel 7.3 (after the 6.13 vDSO and 6.16 SO_PASSCRED changes) and trixie's CRIU 4.1.1"},
	{Name: "7.3-criu4.2", KernelVersion: "7.3", CRIUSuite: "forky", Description: "kernel 7.3 and forky's CRIU 4.2.1"},
}

// LookupCell returns the cell named name.
func LookupCell(name string) (CellSpec, error) {
	for _, c := range Cells {
		if c.Name == name {
			return c, nil
		}
	}
	names := make([]string, len(Cells))
	for i, c := range Cells {
		names[i] = c.Name
	}
	return CellSpec{}, fmt.Errorf("%q is not a cell: use one of %s", name, strings.Join(names, ", "))
}
