package checks

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// procDevice is a character device number.
type procDevice struct {
	Major, Minor uint32
}

func (d procDevice) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// ttyNr is the device number the way /proc/PID/stat's tty_nr field
// encodes it (the kernel's new_encode_dev).
func (d procDevice) ttyNr() int {
	return int((d.Minor & 0xff) | (d.Major << 8) | ((d.Minor &^ 0xff) << 12))
}

// The tty kinds of CRIU's get_tty_driver (criu/tty.c).
const (
	procTTYNone    = ""
	procTTYMaster  = "ptmx"
	procTTYSlave   = "pts"
	procTTYConsole = "console"
	procTTYCtty    = "ctty"
	procTTYVT      = "vt"
	procTTYSerial  = "serial"
)

// procTTYKind classifies a character device as CRIU does. A device CRIU
// does not treat as a tty (a UART ttyS*, hvc) is not a tty here either:
// process.files reports it as a device CRIU cannot dump.
func procTTYKind(d procDevice) string {
	switch {
	case d.Major == 5 && d.Minor == 2:
		return procTTYMaster
	case d.Major == 5 && d.Minor == 1:
		return procTTYConsole
	case d.Major == 5 && d.Minor == 0:
		return procTTYCtty
	case d.Major >= 128 && d.Major <= 135:
		return procTTYMaster
	case d.Major >= 136 && d.Major <= 143:
		return procTTYSlave
	case d.Major == 4 && d.Minor >= 1 && d.Minor <= 63:
		return procTTYVT
	case d.Major == 188 || d.Major == 204:
		return procTTYSerial
	}
	return procTTYNone
}

// procSlaveIndex is the pty index of a slave device.
func procSlaveIndex(d procDevice) int { return int(d.Major-136)*256 + int(d.Minor) }

// procSlaveDevice is the device of pty slave index.
func procSlaveDevice(index int) procDevice {
	return procDevice{Major: 136 + uint32(index/256), Minor: uint32(index % 256)}
}

var (
	procPtsPath  = regexp.MustCompile(`^/dev/pts/([0-9]+)$`)
	procVTPath   = regexp.MustCompile(`^/dev/tty([0-9]+)$`)
	procUARTPath = regexp.MustCompile(`^/dev/ttyS([0-9]+)$`)
	procHVCPath  = regexp.MustCompile(`^/dev/hvc([0-9]+)$`)
)

// procDevByPath guesses the device number from the fd's path, for fixture
// trees where the fd cannot be stat'ed.
func procDevByPath(p string) (procDevice, bool) {
	switch p {
	case "/dev/null":
		return procDevice{1, 3}, true
	case "/dev/zero":
		return procDevice{1, 5}, true
	case "/dev/full":
		return procDevice{1, 7}, true
	case "/dev/random":
		return procDevice{1, 8}, true
	case "/dev/urandom":
		return procDevice{1, 9}, true
	case "/dev/tty":
		return procDevice{5, 0}, true
	case "/dev/console":
		return procDevice{5, 1}, true
	case "/dev/ptmx", "/dev/pts/ptmx":
		return procDevice{5, 2}, true
	case "/dev/net/tun":
		return procDevice{10, 200}, true
	}
	num := func(re *regexp.Regexp) (uint32, bool) {
		m := re.FindStringSubmatch(p)
		if m == nil {
			return 0, false
		}
		n, err := strconv.ParseUint(m[1], 10, 32)
		return uint32(n), err == nil
	}
	if n, ok := num(procPtsPath); ok {
		return procSlaveDevice(int(n)), true
	}
	if n, ok := num(procVTPath); ok && n >= 1 && n <= 63 {
		return procDevice{4, n}, true
	}
	if n, ok := num(procUARTPath); ok {
		return procDevice{4, 64 + n}, true
	}
	if n, ok := num(procHVCPath); ok {
		return procDevice{229, n}, true
	}
	return procDevice{}, false
}

// charDev returns the device number of a character-device fd: from stat
// on a live system, from the path on a fixture tree.
func (t *procTree) charDev(pid int, fd proc.FD, live bool) (procDevice, bool) {
	if !strings.HasPrefix(fd.Target, "/") {
		return procDevice{}, false
	}
	if live {
		fi, err := os.Stat(t.fs.Path(pid, "fd", strconv.Itoa(fd.FD)))
		if err != nil {
			return procDevice{}, false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || fi.Mode()&os.ModeCharDevice == 0 {
			return procDevice{}, false
		}
		return procDevice{unix.Major(st.Rdev), unix.Minor(st.Rdev)}, true
	}
	return procDevByPath(fd.Target)
}

// procTTYFD is one fd of the tree open on a terminal.
type procTTYFD struct {
	P     *treeProc
	FD    proc.FD
	Dev   procDevice
	Kind  string
	Index int // pty index, -1 when not a pty or unknown
}

func (f procTTYFD) String() string {
	s := fmt.Sprintf("%s fd %d -> %s (%s %s", f.P.label(), f.FD.FD, f.FD.Target, f.Kind, f.Dev)
	if f.Index >= 0 {
		s += fmt.Sprintf(", pty index %d", f.Index)
	}
	return s + ")"
}

// procSession is the session a terminal belongs to.
type procSession struct {
	SID    int // host view
	Member int // a process with the terminal as controlling tty
}

// checkProcTTY predicts CRIU's two terminal checks (criu/tty.c): a pty
// slave whose master is not in the tree ("Found slave peer index N
// without correspond master peer"), and a terminal whose session leader
// is visible but not in the tree ("Found dangling tty with sid ..."). Both
// need --shell-job; with it CRIU still accepts only one external slave.
func checkProcTTY(_ context.Context, t *procTree) []reports.Finding {
	var vanished []string
	fdsOf, err := procFDsOf(t, &vanished)
	if err != nil {
		return procFDError(err)
	}
	live := t.fs.Live()
	var ttys []procTTYFD
	for _, p := range t.Procs {
		for _, fd := range fdsOf[p] {
			d, ok := t.charDev(p.PID, fd, live)
			if !ok {
				continue
			}
			kind := procTTYKind(d)
			if kind == procTTYNone {
				continue
			}
			tf := procTTYFD{P: p, FD: fd, Dev: d, Kind: kind, Index: -1}
			switch kind {
			case procTTYSlave:
				tf.Index = procSlaveIndex(d)
			case procTTYMaster:
				if fi, err := t.fdInfo(p.PID, fd.FD); err == nil {
					tf.Index = fi.TTYIndex
				}
			}
			ttys = append(ttys, tf)
		}
	}
	var ev []string
	for _, p := range t.Procs {
		if p.TTY != 0 {
			ev = append(ev, fmt.Sprintf("%s: controlling terminal tty_nr %d (stat)", p.label(), p.TTY))
		}
	}
	for _, tf := range ttys {
		ev = append(ev, tf.String())
	}
	ev = append(ev, procVanished(t, vanished)...)
	if len(ttys) == 0 {
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: "no process of the tree has a terminal open"}}
	}

	masters := map[int]bool{}
	for _, tf := range ttys {
		if tf.Kind == procTTYMaster && tf.Index >= 0 {
			masters[tf.Index] = true
		}
	}
	var unpaired []int
	var firstUnpaired *procTTYFD
	for i, tf := range ttys {
		if tf.Kind == procTTYSlave && !masters[tf.Index] && !slices.Contains(unpaired, tf.Index) {
			unpaired = append(unpaired, tf.Index)
			if firstUnpaired == nil {
				firstUnpaired = &ttys[i]
			}
		}
	}
	dangling := procDanglingTTYs(t, ttys)
	ev = append(ev, dangling...)

	shellJob := &reports.Fix{
		Description: "dump and restore with --shell-job: CRIU then treats the outside terminal as external and restore attaches the tree to its own terminal",
		CRIU:        criuopt.Set{ShellJob: true}, Restore: criuopt.Set{ShellJob: true},
		AutoFixable: true, Fixer: FixerIDCRIUOption}
	switch {
	case len(unpaired) > 1:
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: fmt.Sprintf("the tree uses %d ptys whose masters are outside it (indexes %s): CRIU: \"Only one slave external peer is allowed\", even with --shell-job", len(unpaired), procInts(unpaired)),
			Fix:     &reports.Fix{Description: "give the workload at most one terminal from outside the tree (or run it without a terminal: stdio on /dev/null, pipes or files)"}}}
	case len(unpaired) == 1:
		return []reports.Finding{{Status: reports.Fail, Evidence: ev, Fix: shellJob,
			Summary: fmt.Sprintf("%s fd %d is on pty slave %d whose master is outside the tree: CRIU: \"Found slave peer index %d without correspond master peer\" without --shell-job",
				firstUnpaired.P.label(), firstUnpaired.FD.FD, unpaired[0], unpaired[0])}}
	case len(dangling) > 0:
		return []reports.Finding{{Status: reports.Fail, Evidence: ev, Fix: shellJob,
			Summary: "a terminal of the tree belongs to a session whose leader is outside the tree: CRIU: \"Found dangling tty\" without --shell-job"}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("%s, each pty with its master and each session leader inside the tree", procN(len(ttys), "terminal fd", "terminal fds"))}}
}

// procDanglingTTYs returns one evidence line per terminal whose session
// CRIU would see and not find in the tree. CRIU reads the session with
// TIOCGSID from inside the task: for a slave or other tty that gives the
// task's own session only when the tty is its controlling terminal
// (ENOTTY, read as 0, otherwise); for a master it gives the session of
// the slave. A session leader outside the task's pid namespace reads as 0,
// and CRIU skips sid 0.
func procDanglingTTYs(t *procTree, ttys []procTTYFD) []string {
	var out []string
	var all map[int]procSession // tty_nr -> session, from a scan of /proc
	rootNS, _ := t.nsLink(t.Root.PID, "pid")
	selfNS, _ := t.fs.SelfNS("pid")
	for _, tf := range ttys {
		var sid int
		visible := false
		switch tf.Kind {
		case procTTYMaster:
			if tf.Index < 0 {
				continue
			}
			nr := procSlaveDevice(tf.Index).ttyNr()
			var s procSession
			found := false
			for _, p := range t.Procs {
				if p.TTY == nr {
					s, found = procSession{SID: p.Session, Member: p.PID}, true
					break
				}
			}
			if !found {
				if all == nil {
					all = procScanTTYs(t)
				}
				s, found = all[nr]
			}
			if !found || s.SID <= 0 {
				continue
			}
			sid = s.SID
			if m, ok := t.byPID[s.Member]; ok {
				visible = proc.Last(m.Status.NSsid) != 0
			} else if rootNS != "" && rootNS == selfNS {
				visible = true
			} else if ns, err := t.nsLink(sid, "pid"); err == nil && ns == rootNS {
				visible = true
			}
		default:
			if tf.P.TTY != tf.Dev.ttyNr() {
				continue // not its controlling terminal: TIOCGSID fails, sid 0
			}
			sid = tf.P.Session
			visible = proc.Last(tf.P.Status.NSsid) != 0
		}
		if !visible {
			continue
		}
		if l, ok := t.byPID[sid]; ok && l.Session == sid {
			continue
		}
		out = append(out, fmt.Sprintf("%s fd %d: the terminal's session %d has its leader outside the tree (CRIU: \"Found dangling tty with sid %d ... (%s) on peer fd %d\")",
			tf.P.label(), tf.FD.FD, sid, sid, tf.Kind, tf.FD.FD))
	}
	return out
}

// procScanTTYs maps controlling terminals to their sessions over every
// process of the system.
func procScanTTYs(t *procTree) map[int]procSession {
	out := map[int]procSession{}
	procs, err := t.proc.AllProcs()
	if err != nil {
		return out
	}
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil || st.TTY == 0 {
			continue
		}
		if _, ok := out[st.TTY]; !ok {
			out[st.TTY] = procSession{SID: st.Session, Member: p.PID}
		}
	}
	return out
}
