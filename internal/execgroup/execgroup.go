// Package execgroup runs external programs (criu, mmdebstrap, modprobe, a
// workload's tools) each in a process group of its own, so that a time
// limit or a cancellation kills the program and everything it started, and
// so that a child still holding the output pipe cannot keep the caller
// waiting.
package execgroup

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"time"
)

// WaitDelay bounds how long Wait waits for the output pipes to close once
// the group has been killed.
const WaitDelay = 2 * time.Second

// Command is exec.CommandContext with the program in a new process group
// that the context's end kills as a whole.
func Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	Prepare(cmd)
	return cmd
}

// Prepare puts an exec.Cmd made with exec.CommandContext in a process group
// of its own and makes its cancellation kill the group.
func Prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	cmd.WaitDelay = WaitDelay
}
