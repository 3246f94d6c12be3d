package testload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Mode and workload of the pty scenario: a process without a terminal
// that opens a pseudo-terminal pair itself (as tmux, screen, expect or an
// ssh server do) in the container's own devpts.
const (
	ModePty = "pty"
	// KeyPty is the slave's path in the container.
	KeyPty = "pty"
)

func init() {
	Register(Mode{Name: ModePty, Description: "opens a pty pair in the container's devpts and keeps both ends, passing a line through it every beat", Run: runPty})
	registerWorkload(NewWorkload("pty", "a process that opens a pseudo-terminal pair of its own ("+Name+" "+ModePty+")", ModePty, nil, verifyPty))
}

func runPty(ctx context.Context, s *State, _ []string) error {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx: %w", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlock the pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("get the pty number: %w", err)
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	slave, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer slave.Close()
	if err := echo(master, slave, "ready"); err != nil {
		return err
	}
	if err := s.Ready(KeyPty, name); err != nil {
		return err
	}
	// A line through the pair every second: after a restore it must still
	// pass, or the mode fails and says why in its state file.
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if err := echo(master, slave, "beat "+strconv.Itoa(i)); err != nil {
			return err
		}
	}
}

// echo writes line into the master and reads it back from the slave.
func echo(master, slave *os.File, line string) error {
	if _, err := master.WriteString(line + "\n"); err != nil {
		return fmt.Errorf("write to the pty master: %w", err)
	}
	buf := make([]byte, 256)
	n, err := slave.Read(buf)
	if err != nil {
		return fmt.Errorf("read from the pty slave: %w", err)
	}
	if got := strings.TrimRight(string(buf[:n]), "\r\n"); got != line {
		return fmt.Errorf("the pty passed %q, want %q", got, line)
	}
	return nil
}

// verifyPty checks that the restored process still holds the master and
// the slave it had at the dump.
func verifyPty(_ context.Context, p container.Probe, before, _ container.State) (string, error) {
	want := before[KeyPty]
	links, _ := filepath.Glob(filepath.Join(procRoot(p), strconv.Itoa(p.PID), "fd", "*"))
	var master, slave bool
	for _, l := range links {
		t, err := os.Readlink(l)
		if err != nil {
			continue
		}
		master = master || t == "/dev/ptmx" || t == "/dev/pts/ptmx"
		slave = slave || t == want
	}
	if !master || !slave {
		return "", fmt.Errorf("the restored process %d lacks its pty (master %v, slave %s %v)", p.PID, master, want, slave)
	}
	return fmt.Sprintf("it still holds its pty pair (%s) and passes lines through it", want), nil
}
