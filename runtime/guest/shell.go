package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"golang.org/x/sys/unix"
)

// shellTTY is the serial console, which the host has put on the user's
// terminal.
const shellTTY = "/dev/ttyS0"

// Shell runs an interactive busybox shell on the serial console as a
// session leader with the console as its controlling terminal, so job
// control and Ctrl-C work; the guest powers off when it exits.
func Shell(_ context.Context, s *Session, job agentapi.Job) error {
	var o agentapi.ShellOptions
	if len(job.Options) > 0 {
		if err := json.Unmarshal(job.Options, &o); err != nil {
			return fmt.Errorf("shell options: %w", err)
		}
	}
	if job.LoadModules {
		if err := s.LoadCRIUModules(); err != nil {
			s.Logf("%v", err)
		}
	}
	tty, err := os.OpenFile(shellTTY, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", shellTTY, err)
	}
	defer tty.Close()
	if o.Rows > 0 && o.Cols > 0 {
		_ = unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(o.Rows), Col: uint16(o.Cols)})
	}
	term := o.Term
	if term == "" {
		term = "linux"
	}
	busybox := s.Manifest.Busybox
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	s.Progress("shell", "shell on the console; exit it to power the guest off")
	fmt.Fprintf(tty, "\nkata-cr guest (kernel %s). criu is %s. Exit the shell to power off.\n", s.Release, s.Manifest.CRIU)
	c := exec.Command(busybox, "sh", "-l")
	c.Dir = "/root"
	if _, err := os.Stat(c.Dir); err != nil {
		c.Dir = "/"
	}
	c.Stdin, c.Stdout, c.Stderr = tty, tty, tty
	c.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "TERM=" + term, `PS1=kata-cr-guest:\w# `,
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Run(); err != nil {
		// The shell's own exit status is the user's last command's, not
		// a failure of the job.
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return nil
		}
		return fmt.Errorf("run the shell: %w", err)
	}
	return nil
}
