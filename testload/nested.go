package testload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"github.com/kata-cr/kata-cr/proc"
)

// Modes of the nested pid namespace scenario.
const (
	ModeNestedPIDNS = "nested-pidns"
	// ModeHold holds still until it is killed: the nested-pidns mode's
	// child.
	ModeHold = "hold"
	// KeyNested is the child's pid in the container's pid namespace;
	// KeyNestedUserNS is "yes" when its pid namespace came with a user
	// namespace.
	KeyNested       = "nested"
	KeyNestedUserNS = "nested_userns"
)

func init() {
	Register(Mode{Name: ModeNestedPIDNS, Description: "starts a child in a pid namespace of its own, nested in the container's (CRIU cannot dump nested pid namespaces)", Run: runNestedPIDNS})
	Register(Mode{Name: ModeHold, Description: "waits until it is killed", Helper: true,
		Run: func(ctx context.Context, _ *State, _ []string) error { return Hold(ctx) }})
	registerWorkload(NewWorkload("nested-pidns", "a process with a child in a nested pid namespace ("+Name+" "+ModeNestedPIDNS+")", ModeNestedPIDNS, nil, nil))
}

func runNestedPIDNS(ctx context.Context, s *State, _ []string) error {
	// Without CAP_SYS_ADMIN (a container's default capabilities) a pid
	// namespace comes with a user namespace that owns it, as unshare -Urp
	// does.
	userns := "no"
	pid, err := forkSelf(ModeHold, syscall.CLONE_NEWPID)
	if errors.Is(err, syscall.EPERM) {
		userns = "yes"
		pid, err = forkSelf(ModeHold, syscall.CLONE_NEWUSER|syscall.CLONE_NEWPID)
	}
	if err != nil {
		return fmt.Errorf("start a child in a new pid namespace: %w", err)
	}
	fs := proc.New("/proc")
	if err := waitState(ctx, fs, pid, "S"); err != nil {
		return err
	}
	st, err := fs.ReadStatus(pid)
	if err != nil {
		return fmt.Errorf("read the child's status: %w", err)
	}
	if len(st.NSpid) < 2 || proc.Last(st.NSpid) != 1 {
		return fmt.Errorf("the child %d is not pid 1 of a nested pid namespace (NSpid %v)", pid, st.NSpid)
	}
	if err := s.Ready(KeyNested, strconv.Itoa(pid), KeyNestedUserNS, userns); err != nil {
		return err
	}
	return Hold(ctx)
}
