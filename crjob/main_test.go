package crjob

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// TestMain makes the test process, which the flow tests use as their
// container, the leader of a session of its own: otherwise the process
// checks judge whatever session the test runner was started in (in a CI
// container that session's leader is often outside the pid namespace),
// and the flow under test would change with the machine. A process group
// leader cannot call setsid(); it runs the tests in a child that does.
func TestMain(m *testing.M) {
	if _, err := syscall.Setsid(); err != nil && os.Getenv("KATA_CR_CRJOB_SETSID") == "" {
		if !errors.Is(err, syscall.EPERM) {
			fmt.Fprintf(os.Stderr, "crjob tests: setsid: %v\n", err)
			os.Exit(1)
		}
		os.Exit(inNewSession())
	}
	os.Exit(m.Run())
}

func inNewSession() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "crjob tests: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KATA_CR_CRJOB_SETSID=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var exit *exec.ExitError
	if err := cmd.Run(); errors.As(err, &exit) {
		return exit.ExitCode()
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "crjob tests: run in a new session: %v\n", err)
		return 1
	}
	return 0
}
