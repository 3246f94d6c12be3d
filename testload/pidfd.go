package testload

import (
	"context"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// Mode and workload of the pidfd scenario: a process that keeps a pidfd of
// its child, as Go's os/exec does for every child it starts.
const (
	ModePidfd = "pidfd"
	// KeyPidfdChild is the child's pid in the container.
	KeyPidfdChild = "pidfd-child"
)

func init() {
	Register(Mode{Name: ModePidfd, Description: "starts a child and keeps a pidfd of it open", Run: runPidfd})
	registerWorkload(NewWorkload("pidfd", "a process holding a pidfd of its child, as Go's os/exec does ("+Name+" "+ModePidfd+")", ModePidfd, nil, nil))
}

func runPidfd(ctx context.Context, s *State, _ []string) error {
	pid, err := forkSelf(ModeHold, 0)
	if err != nil {
		return fmt.Errorf("start the child: %w", err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := s.Ready(KeyPidfdChild, strconv.Itoa(pid)); err != nil {
		return err
	}
	return Hold(ctx)
}
