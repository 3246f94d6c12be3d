package testload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Verifier checks, after the restore, what a mode set up: before is the
// snapshot taken at the dump, now the restored process's state file.
type Verifier func(ctx context.Context, p container.Probe, before, now container.State) (string, error)

// NewWorkload returns the container workload name that runs
// kata-cr-testload MODE ARGS...: ready when the mode says so, snapshotted
// as its state file, verified when the restored process writes the run id
// it had at the dump with a heartbeat past the dumped one, and then by
// verify when it is not nil. Register it with container.Register.
func NewWorkload(name, description, mode string, args []string, verify Verifier) container.Workload {
	return container.Workload{
		Name:        name,
		Description: description,
		Args:        append([]string{Path, mode}, args...),
		Binaries:    []container.Binary{Binary},
		Ready: func(ctx context.Context, p container.Probe) error {
			err := p.Poll(ctx, "wait for "+Name+" "+mode+" to be ready", func() error {
				_, err := readyState(p, mode)
				return err
			})
			if err != nil {
				// A mode that failed wrote why before its init exited.
				if st, rerr := ReadState(p); rerr == nil && st[KeyError] != "" {
					return fmt.Errorf("%s %s failed: %s", Name, mode, st[KeyError])
				}
			}
			return err
		},
		Snapshot: func(ctx context.Context, p container.Probe) (container.State, error) {
			var st container.State
			err := p.Poll(ctx, "read the state of "+Name+" "+mode, func() error {
				var err error
				st, err = readyState(p, mode)
				return err
			})
			return st, err
		},
		Verify: func(ctx context.Context, p container.Probe, before container.State) (string, error) {
			now, err := carriedOn(ctx, p, mode, before)
			if err != nil {
				return "", err
			}
			msg := fmt.Sprintf("the restored %s %s (pid %d) carried on: heartbeat %s at the dump, %s after the restore", Name, mode, p.PID, before[KeyBeat], now[KeyBeat])
			if verify == nil {
				return msg, nil
			}
			more, err := verify(ctx, p, before, now)
			if err != nil {
				return "", err
			}
			return msg + "; " + more, nil
		},
	}
}

// Observer reads what the prober sees of a scenario from outside, through
// /proc, as state keys.
type Observer func(p container.Probe) (container.State, error)

// WithObserver adds what observe sees to w's snapshots, before the dump and
// after the restore (the report's state_before and state_after).
func WithObserver(w container.Workload, observe Observer) container.Workload {
	snapshot := w.Snapshot
	w.Snapshot = func(ctx context.Context, p container.Probe) (container.State, error) {
		st, err := snapshot(ctx, p)
		if err != nil {
			return nil, err
		}
		seen, err := observe(p)
		if err != nil {
			return nil, fmt.Errorf("observe %s: %w", w.Name, err)
		}
		for k, v := range seen {
			st[k] = v
		}
		return st, nil
	}
	return w
}

// registerWorkload adds w to the container's workload table.
func registerWorkload(w container.Workload) {
	container.Register(w)
}

// ReadState reads the state file of the container p looks at.
func ReadState(p container.Probe) (container.State, error) {
	data, err := p.ReadFile(StatePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", errNoState, StatePath)
	}
	if err != nil {
		return nil, err
	}
	m, err := ParseState(data)
	if err != nil {
		return nil, err
	}
	return container.State(m), nil
}

// readyState reads the state file and returns it once mode says it is
// ready; an error made by container.NotYet before.
func readyState(p container.Probe, mode string) (container.State, error) {
	st, err := ReadState(p)
	if errors.Is(err, errNoState) {
		return nil, container.NotYet("%v", err)
	}
	if err != nil {
		return nil, err
	}
	if st[KeyMode] != mode {
		return nil, fmt.Errorf("%s is written by mode %q, not %q", StatePath, st[KeyMode], mode)
	}
	if st[KeyError] != "" {
		return nil, fmt.Errorf("%s %s failed: %s", Name, mode, st[KeyError])
	}
	if st[KeyReady] != "yes" {
		return nil, container.NotYet("%s %s is not ready yet", Name, mode)
	}
	return st, nil
}

// carriedOn waits until the restored process writes a heartbeat past the
// dumped one and checks that it is the process that was dumped (the same
// run id), not a new one.
func carriedOn(ctx context.Context, p container.Probe, mode string, before container.State) (container.State, error) {
	dumped, err := strconv.Atoi(before[KeyBeat])
	if err != nil && before[KeyBeat] != "" {
		return nil, fmt.Errorf("the snapshot's heartbeat %q: %w", before[KeyBeat], err)
	}
	var now container.State
	err = p.Poll(ctx, fmt.Sprintf("wait for the restored heartbeat to pass %d", dumped), func() error {
		st, err := readyState(p, mode)
		if err != nil {
			return err
		}
		if st[KeyRun] != before[KeyRun] {
			return fmt.Errorf("the %s %s running now started afresh (run %s, at the dump %s): its memory was not restored", Name, mode, st[KeyRun], before[KeyRun])
		}
		n, _ := strconv.Atoi(st[KeyBeat])
		if n <= dumped {
			return container.NotYet("heartbeat at %d", n)
		}
		now = st
		return nil
	})
	return now, err
}
