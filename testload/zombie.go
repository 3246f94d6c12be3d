package testload

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes and workload of the zombie scenario.
const (
	ModeZombie = "zombie"
	// ModeExit exits at once: the zombie mode's child.
	ModeExit = "exit"
	// KeyZombie is the zombie child's pid in the container.
	KeyZombie = "zombie"
)

func init() {
	Register(Mode{Name: ModeZombie, Description: "starts a child that exits and never reaps it: the tree keeps a zombie", Run: runZombie})
	Register(Mode{Name: ModeExit, Description: "exits at once", Helper: true, Run: func(context.Context, *State, []string) error { return nil }})
	registerWorkload(WithObserver(NewWorkload("zombie", "a process that keeps an unreaped zombie child ("+Name+" "+ModeZombie+")", ModeZombie, nil, verifyZombie), observeZombies))
}

func runZombie(ctx context.Context, s *State, _ []string) error {
	// Never waited for, the child stays a zombie.
	return holdChild(ctx, s, ModeExit, "Z", KeyZombie)
}

// forkSelf starts this program as Name in mode, in new namespaces of
// flags, and does not wait for it. It forks with syscall.ForkExec rather
// than os/exec: an os.Process holds a pidfd, a file of its own that no
// scenario here is about.
func forkSelf(mode string, flags uintptr) (int, error) {
	return syscall.ForkExec("/proc/self/exe", []string{Name, mode}, &syscall.ProcAttr{
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Cloneflags: flags},
	})
}

// holdChild is a scenario of one child: it starts the child in mode,
// waits until a thread of it is in state, says it is ready with the
// child's pid under key, and holds.
func holdChild(ctx context.Context, s *State, mode, state, key string) error {
	pid, err := forkSelf(mode, 0)
	if err != nil {
		return fmt.Errorf("start the %s child: %w", mode, err)
	}
	if err := waitState(ctx, proc.New("/proc"), pid, state); err != nil {
		return err
	}
	if err := s.Ready(key, strconv.Itoa(pid)); err != nil {
		return err
	}
	return Hold(ctx)
}

// waitState waits until a thread of process pid is in the state whose
// letter is state (Z, D, S, ...).
func waitState(ctx context.Context, fs proc.FS, pid int, state string) error {
	for {
		states, err := threadStates(fs, pid)
		if err != nil {
			return fmt.Errorf("wait for process %d to be in state %s: %w", pid, state, err)
		}
		for _, st := range states {
			if strings.HasPrefix(st, state) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for process %d to be in state %s (its threads are %q): %w", pid, state, states, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// threadStates lists the states of the threads of process pid.
func threadStates(fs proc.FS, pid int) ([]string, error) {
	tids, err := fs.Tasks(pid)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, tid := range tids {
		if st, err := fs.ReadTaskStatus(pid, tid); err == nil {
			out = append(out, st.State)
		}
	}
	return out, nil
}

// KeyZombies counts the init's zombie children, as the prober sees them.
const KeyZombies = "zombies"

// zombieChildren lists the init's children that are zombies.
func zombieChildren(p container.Probe) ([]int, error) {
	fs := proc.New(procRoot(p))
	kids, err := fs.Children(p.PID)
	if err != nil {
		return nil, fmt.Errorf("list the init's children: %w", err)
	}
	var out []int
	for _, k := range kids {
		if st, err := fs.ReadStatus(k); err == nil && strings.HasPrefix(st.State, "Z") {
			out = append(out, k)
		}
	}
	return out, nil
}

func observeZombies(p container.Probe) (container.State, error) {
	z, err := zombieChildren(p)
	if err != nil {
		return nil, err
	}
	return container.State{KeyZombies: strconv.Itoa(len(z))}, nil
}

// verifyZombie checks that the restored init still has its zombie child.
func verifyZombie(_ context.Context, p container.Probe, _, _ container.State) (string, error) {
	z, err := zombieChildren(p)
	if err != nil {
		return "", err
	}
	if len(z) == 0 {
		return "", fmt.Errorf("the restored init %d has no zombie child", p.PID)
	}
	return fmt.Sprintf("its child %d is still a zombie", z[0]), nil
}

// procRoot is where the probe's proc is mounted.
func procRoot(p container.Probe) string {
	if p.ProcRoot == "" {
		return "/proc"
	}
	return p.ProcRoot
}
