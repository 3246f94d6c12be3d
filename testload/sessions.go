package testload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes of the session and process group scenarios, and their helpers.
const (
	// ModeChildSession starts a child in a session of its own (setsid)
	// with a grandchild in that session.
	ModeChildSession = "child-session"
	// ModeOrphanPgrp leaves a process group whose leader has exited: a
	// child makes a group, starts a grandchild in it and exits.
	ModeOrphanPgrp = "orphan-pgrp"
	// ModeBeater counts beats in memory and writes them to its beat file
	// (BeatDir/NAME) with its pid; its words: NAME, then the names of
	// beaters it starts as its children.
	ModeBeater = "beater"
	// ModePgrpLeader leads a new process group, starts a beater in it
	// (its word: the beater's name) and exits.
	ModePgrpLeader = "pgrp-leader"
	// BeatDir holds the beat files of a tree's beaters (a container path).
	BeatDir = "/run/kata-cr-beats"
	// KeyChecks counts the checks a mode made of its scenario since it
	// was ready (everyBeat): a value past the dumped one proves that the
	// keys written with it were checked after the restore.
	KeyChecks = "checks"
)

func init() {
	Register(Mode{Name: ModeChildSession, Description: "starts a child in a session of its own (setsid) and a grandchild in that session; both beat", Run: runChildSession})
	Register(Mode{Name: ModeOrphanPgrp, Description: "leaves a process group whose leader exited, with a beating member", Run: runOrphanPgrp})
	Register(Mode{Name: ModeBeater, Description: "beats into " + BeatDir + "/NAME (words: NAME [CHILD...])", Helper: true, Run: runBeater})
	Register(Mode{Name: ModePgrpLeader, Description: "leads a new process group, starts a beater in it and exits (word: the beater's name)", Helper: true, Run: runPgrpLeader})
	registerWorkload(NewWorkload("child-session", "a child in a session of its own and a grandchild in that session ("+Name+" "+ModeChildSession+")",
		ModeChildSession, nil, carriedKeys(ModeChildSession, beaterKeys("child", "grandchild"))))
	registerWorkload(NewWorkload("orphan-pgrp", "a process group whose leader exited, its member beating ("+Name+" "+ModeOrphanPgrp+")",
		ModeOrphanPgrp, nil, carriedKeys(ModeOrphanPgrp, beaterKeys("member").and(stateKeys{same: []string{"leader_pid"}}))))
}

// startSelf starts this program in mode with words, with sys's attributes,
// without waiting for it (see forkSelf).
func startSelf(sys *syscall.SysProcAttr, mode string, words ...string) (int, error) {
	pid, err := syscall.ForkExec("/proc/self/exe", append([]string{Name, mode}, words...), &syscall.ProcAttr{
		Files: []uintptr{0, 1, 2},
		Sys:   sys,
	})
	if err != nil {
		return 0, fmt.Errorf("start %s %s: %w", mode, strings.Join(words, " "), err)
	}
	return pid, nil
}

func runChildSession(ctx context.Context, s *State, _ []string) error {
	if _, err := startSelf(&syscall.SysProcAttr{Setsid: true}, ModeBeater, "child", "grandchild"); err != nil {
		return err
	}
	return readyAndBeat(ctx, s, func() ([]string, error) { return relayBeaters(ctx, "child", "grandchild") })
}

func runOrphanPgrp(ctx context.Context, s *State, _ []string) error {
	leader, err := startSelf(&syscall.SysProcAttr{Setpgid: true}, ModePgrpLeader, "member")
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(leader, &ws, 0, nil); err != nil {
		return fmt.Errorf("wait for the group leader %d: %w", leader, err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("the group leader %d ended with %v", leader, ws)
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		kv, err := relayBeaters(ctx, "member")
		if err != nil {
			return nil, err
		}
		// The group keeps the id of its gone leader.
		if pgid := kvValue(kv, "member_pgid"); pgid != strconv.Itoa(leader) {
			return nil, fmt.Errorf("the member's process group is %s, not the gone leader's %d", pgid, leader)
		}
		return append(kv, "leader_pid", strconv.Itoa(leader)), nil
	})
}

func runPgrpLeader(_ context.Context, _ *State, args []string) error {
	if len(args) != 1 {
		return errors.New("want the name of the beater to start")
	}
	_, err := startSelf(nil, ModeBeater, args[0])
	return err
}

// runBeater starts the beaters args[1:] name, then counts beats in memory
// and writes "PID COUNT" to BeatDir/args[0] every beatInterval.
func runBeater(ctx context.Context, _ *State, args []string) error {
	if len(args) == 0 {
		return errors.New("want a name")
	}
	for _, child := range args[1:] {
		if _, err := startSelf(nil, ModeBeater, child); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(BeatDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(BeatDir, args[0])
	t := time.NewTicker(beatInterval)
	defer t.Stop()
	for n := 1; ; n++ {
		if err := writeAtomic(path, fmt.Sprintf("%d %d\n", os.Getpid(), n)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// writeAtomic writes data to path through a temporary file renamed over it.
func writeAtomic(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readBeat reads a beater's pid and count.
func readBeat(name string) (pid, count int, err error) {
	data, err := os.ReadFile(filepath.Join(BeatDir, name))
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(string(data), "%d %d", &pid, &count); err != nil {
		return 0, 0, fmt.Errorf("beat file %s holds %q: %w", name, data, err)
	}
	return pid, count, nil
}

// relayBeaters waits until each beater of names has beaten and returns,
// for each, its pid, session, process group (as this pid namespace sees
// them) and count, under NAME_pid, NAME_sid, NAME_pgid and NAME_beat.
func relayBeaters(ctx context.Context, names ...string) ([]string, error) {
	fs := proc.New("/proc")
	var kv []string
	for _, name := range names {
		var pid, count int
		for {
			var err error
			pid, count, err = readBeat(name)
			if err == nil {
				break
			}
			if !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("wait for the beater %s: %w", name, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
		st, err := fs.ReadStatus(pid)
		if err != nil {
			return nil, fmt.Errorf("the beater %s (pid %d): %w", name, pid, err)
		}
		kv = append(kv, name+"_pid", strconv.Itoa(pid), name+"_sid", strconv.Itoa(proc.Last(st.NSsid)),
			name+"_pgid", strconv.Itoa(proc.Last(st.NSpgid)), name+"_beat", strconv.Itoa(count))
	}
	return kv, nil
}

// kvValue returns the value of key in the pairs kv.
func kvValue(kv []string, key string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == key {
			return kv[i+1]
		}
	}
	return ""
}

// beaterKeys are the keys relayBeaters records for names: which must keep
// their values, and which must move on.
func beaterKeys(names ...string) stateKeys {
	var k stateKeys
	for _, n := range names {
		k.same = append(k.same, n+"_pid", n+"_sid", n+"_pgid")
		k.moved = append(k.moved, n+"_beat")
	}
	return k
}

// readyAndBeat checks the scenario with step, records its pairs and marks
// the mode ready, then checks it again every beatInterval (everyBeat).
func readyAndBeat(ctx context.Context, s *State, step func() ([]string, error)) error {
	kv, err := step()
	if err != nil {
		return err
	}
	if err := s.Ready(append(kv, KeyChecks, "0")...); err != nil {
		return err
	}
	return everyBeat(ctx, s, step)
}

// everyBeat calls step every beatInterval until ctx ends and records the
// pairs it returns together with KeyChecks, the count of checks, in one
// write. An error of step ends the mode.
func everyBeat(ctx context.Context, s *State, step func() ([]string, error)) error {
	t := time.NewTicker(beatInterval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		kv, err := step()
		if err != nil {
			return err
		}
		if err := s.Set(append(kv, KeyChecks, strconv.Itoa(n))...); err != nil {
			return err
		}
	}
}

// stateKeys are the state keys a verifier compares with the dump: same
// must keep their values, moved (counters) must pass them.
type stateKeys struct {
	same, moved []string
}

// and joins key lists.
func (k stateKeys) and(more stateKeys) stateKeys {
	return stateKeys{same: append(append([]string(nil), k.same...), more.same...), moved: append(append([]string(nil), k.moved...), more.moved...)}
}

// carriedKeys returns a Verifier that waits until the restored mode has
// checked its scenario again (KeyChecks past the dumped value) and each
// counter of keys.moved passed its dumped value, then checks that each
// key of keys.same has its dumped value.
func carriedKeys(mode string, keys stateKeys) Verifier {
	return func(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
		for _, k := range append(keys.same, keys.moved...) {
			if before[k] == "" {
				return "", fmt.Errorf("the snapshot has no %s", k)
			}
		}
		var now container.State
		err := p.Poll(ctx, "wait for the restored "+mode+" to check its scenario again", func() error {
			st, err := readyState(p, mode)
			if err != nil {
				return err
			}
			for _, k := range append([]string{KeyChecks}, keys.moved...) {
				b, _ := strconv.ParseInt(before[k], 10, 64)
				n, err := strconv.ParseInt(st[k], 10, 64)
				if err != nil {
					return fmt.Errorf("the restored %s=%q: %w", k, st[k], err)
				}
				if n <= b {
					return container.NotYet("%s at %d, %d at the dump", k, n, b)
				}
			}
			now = st
			return nil
		})
		if err != nil {
			return "", err
		}
		var diff []string
		for _, k := range keys.same {
			if now[k] != before[k] {
				diff = append(diff, fmt.Sprintf("%s=%q (at the dump %q)", k, now[k], before[k]))
			}
		}
		if len(diff) > 0 {
			return "", fmt.Errorf("the restored %s changed: %s", mode, strings.Join(diff, ", "))
		}
		msg := fmt.Sprintf("checked again (%s %s->%s); %d key(s) kept their values (%s)", KeyChecks, before[KeyChecks], now[KeyChecks], len(keys.same), strings.Join(keys.same, ", "))
		var moved []string
		for _, k := range keys.moved {
			moved = append(moved, fmt.Sprintf("%s %s->%s", k, before[k], now[k]))
		}
		if len(moved) > 0 {
			msg += "; moved on: " + strings.Join(moved, ", ")
		}
		return msg, nil
	}
}
