package testload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// ModeCgroupLimits starts two beaters and records, every beat, the cgroup
// of each process of the tree and the limits of the container's cgroup.
const ModeCgroupLimits = "cgroup-limits"

// cgroupLimitFiles are the limits the cgroup-limits mode records, read at
// the root of the container's cgroup namespace.
var cgroupLimitFiles = []string{"memory.max", "pids.max"}

// The limits the cgroup-limits workload's spec sets, as a pod's limits
// would: 256 MiB of memory, 64 tasks.
const (
	cgroupMemoryLimit = 256 << 20
	cgroupPidsLimit   = 64
)

func init() {
	Register(Mode{Name: ModeCgroupLimits, Description: "an init and two beating children, recording their cgroups and the container cgroup's memory.max and pids.max", Run: runCgroupLimits})
	keys := beaterKeys("cg1", "cg2").and(stateKeys{same: []string{"cgroup_init", "cgroup_cg1", "cgroup_cg2"}})
	for _, f := range cgroupLimitFiles {
		keys.same = append(keys.same, "limit_"+f)
	}
	inner := carriedKeys(ModeCgroupLimits, keys)
	verify := func(ctx context.Context, p container.Probe, before, now container.State) (string, error) {
		msg, err := inner(ctx, p, before, now)
		if err != nil {
			return "", err
		}
		// The restored tree must be under the limits its spec sets, not
		// merely under the same ones as at the dump.
		for f, want := range map[string]int{"memory.max": cgroupMemoryLimit, "pids.max": cgroupPidsLimit} {
			if got := now["limit_"+f]; got != strconv.Itoa(want) {
				return "", fmt.Errorf("the container's cgroup has %s %s, want the spec's %d", f, got, want)
			}
		}
		seen, err := observeCgroup(p)
		if err != nil {
			return "", err
		}
		if seen[KeyCgroupOutside] != before[KeyCgroupOutside] {
			return "", fmt.Errorf("the restored init is in the cgroup %s, at the dump %s", seen[KeyCgroupOutside], before[KeyCgroupOutside])
		}
		return msg + "; the init is in " + seen[KeyCgroupOutside] + " as at the dump", nil
	}
	w := WithObserver(NewWorkload("cgroup-limits", "an init and two children in the container's cgroup, with its limits recorded ("+Name+" "+ModeCgroupLimits+")",
		ModeCgroupLimits, nil, verify), observeCgroup)
	memory, pids := int64(cgroupMemoryLimit), int64(cgroupPidsLimit)
	w.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &memory}, Pids: &specs.LinuxPids{Limit: &pids}}
	registerWorkload(w)
}

// KeyCgroupOutside is the container init's cgroup as the prober sees it.
const KeyCgroupOutside = "cgroup_outside"

func observeCgroup(p container.Probe) (container.State, error) {
	cg, err := container.CgroupOf(procRoot(p), p.PID)
	if err != nil {
		return nil, err
	}
	return container.State{KeyCgroupOutside: cg}, nil
}

func runCgroupLimits(ctx context.Context, s *State, _ []string) error {
	for _, name := range []string{"cg1", "cg2"} {
		if _, err := startSelf(nil, ModeBeater, name); err != nil {
			return err
		}
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		kv, err := relayBeaters(ctx, "cg1", "cg2")
		if err != nil {
			return nil, err
		}
		for _, name := range []string{"init", "cg1", "cg2"} {
			pid := os.Getpid()
			if name != "init" {
				pid, _ = strconv.Atoi(kvValue(kv, name+"_pid"))
			}
			cg, err := container.CgroupOf("/proc", pid)
			if err != nil {
				return nil, err
			}
			kv = append(kv, "cgroup_"+name, cg)
		}
		for _, f := range cgroupLimitFiles {
			data, err := os.ReadFile(filepath.Join(container.GuestCgroupRoot, f))
			v := strings.TrimSpace(string(data))
			switch {
			case errors.Is(err, os.ErrNotExist):
				// The controller is not enabled for the container's cgroup.
				v = "absent"
			case err != nil:
				return nil, fmt.Errorf("read the container cgroup's %s: %w", f, err)
			}
			kv = append(kv, "limit_"+f, v)
		}
		return kv, nil
	})
}
