package container

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
)

// GuestCgroupRoot is where the guest mounts cgroup v2 (EnsureCgroup2), as
// Kata's agent does for a guest with the unified hierarchy.
const GuestCgroupRoot = "/sys/fs/cgroup"

// EnsureCgroup2 mounts cgroup v2 on root unless it is mounted there
// already, as Kata's agent does for a guest with the unified hierarchy.
// u-root's init mounts cgroup v1 instead (a tmpfs on /sys/fs/cgroup and a
// hierarchy per controller below it), which holds the controllers: those
// hierarchies, still empty, are unmounted first, and EnsureCgroup2 waits
// until their controllers are free for cgroup v2.
func EnsureCgroup2(root string) error {
	if isCgroup2(root) {
		return nil
	}
	root = filepath.Clean(root)
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", root, err)
	}
	mounts, err := proc.ParseMountInfo(data)
	if err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", root, err)
	}
	// Deepest first, the tmpfs under them last.
	for i := len(mounts) - 1; i >= 0; i-- {
		m := mounts[i]
		if m.FSType == "cgroup" && strings.HasPrefix(m.MountPoint, root+"/") {
			if err := unix.Unmount(m.MountPoint, 0); err != nil {
				return fmt.Errorf("mount cgroup2 on %s: unmount the cgroup v1 hierarchy %s: %w", root, m.MountPoint, err)
			}
		}
	}
	if m := mountAt(root); m != nil && m.FSType == "tmpfs" {
		if err := unix.Unmount(root, 0); err != nil {
			return fmt.Errorf("mount cgroup2 on %s: unmount the tmpfs of cgroup v1: %w", root, err)
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", root, err)
	}
	if err := unix.Mount("cgroup2", root, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RELATIME, "nsdelegate"); err != nil {
		return fmt.Errorf("mount cgroup2 on %s: %w", root, err)
	}
	// A v1 hierarchy gives its controllers back once the kernel has
	// destroyed it, shortly after the unmount.
	want := enabledControllers()
	deadline := time.Now().Add(5 * time.Second)
	for {
		have, _ := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		missing := slices.DeleteFunc(slices.Clone(want), func(c string) bool { return slices.Contains(strings.Fields(string(have)), c) })
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mount cgroup2 on %s: the controllers %s stay bound to cgroup v1", root, strings.Join(missing, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// enabledControllers are the cgroup v2 controllers of limits a spec can
// set that the kernel has enabled (/proc/cgroups).
func enabledControllers() []string {
	data, err := os.ReadFile("/proc/cgroups")
	if err != nil {
		return nil
	}
	v2 := map[string]string{"cpuset": "cpuset", "cpu": "cpu", "memory": "memory", "pids": "pids"}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[3] == "1" {
			if c, ok := v2[f[0]]; ok {
				out = append(out, c)
			}
		}
	}
	sort.Strings(out)
	return out
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// cgroup is a container's cgroup v2 directory, created with its limits
// before the container starts in it.
type cgroup struct {
	root string
	// rel is the cgroup's path below root, as /proc/PID/cgroup shows it.
	rel string
	// limits are the files written, with their values.
	limits map[string]string
}

func (c *cgroup) dir() string { return filepath.Join(c.root, c.rel) }

// cgroupFiles turns linux.resources into cgroup v2 files and values, the
// way runc and Kata's agent translate them.
func cgroupFiles(r *specs.LinuxResources) map[string]string {
	out := map[string]string{}
	if r == nil {
		return out
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil {
			out["memory.max"] = limitValue(*m.Limit)
		}
		if m.Reservation != nil {
			out["memory.low"] = limitValue(*m.Reservation)
		}
		// The spec's swap is memory plus swap; cgroup v2 counts swap
		// alone.
		if m.Swap != nil && m.Limit != nil {
			switch {
			case *m.Swap < 0:
				out["memory.swap.max"] = "max"
			case *m.Limit >= 0 && *m.Swap >= *m.Limit:
				out["memory.swap.max"] = strconv.FormatInt(*m.Swap-*m.Limit, 10)
			}
		}
	}
	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares > 0 {
			// cgroup v1 shares 2..262144 onto cgroup v2 weights 1..10000.
			out["cpu.weight"] = strconv.FormatUint(1+((*c.Shares-2)*9999)/262142, 10)
		}
		if c.Quota != nil || c.Period != nil {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			quota := "max"
			if c.Quota != nil && *c.Quota > 0 {
				quota = strconv.FormatInt(*c.Quota, 10)
			}
			out["cpu.max"] = quota + " " + strconv.FormatUint(period, 10)
		}
		if c.Cpus != "" {
			out["cpuset.cpus"] = c.Cpus
		}
		if c.Mems != "" {
			out["cpuset.mems"] = c.Mems
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		out["pids.max"] = limitValue(*p.Limit)
	}
	for k, v := range r.Unified {
		out[k] = v
	}
	return out
}

func limitValue(v int64) string {
	if v < 0 {
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// createCgroup creates the cgroup rel below the cgroup v2 root, enables
// in its ancestors the controllers its limits need, and writes them. A
// limit the guest's cgroup v2 cannot apply is an error naming the file.
func createCgroup(root, rel string, r *specs.LinuxResources) (*cgroup, error) {
	rel = filepath.Clean("/" + rel)
	if rel == "/" {
		return nil, errors.New("container cgroup: linux.cgroupsPath is the root cgroup: give a cgroup of its own")
	}
	if !isCgroup2(root) {
		return nil, fmt.Errorf("container cgroup: %s is not a cgroup v2 mount", root)
	}
	c := &cgroup{root: root, rel: rel, limits: cgroupFiles(r)}
	need := map[string]bool{}
	for f := range c.limits {
		ctrl, _, _ := strings.Cut(f, ".")
		if ctrl != "cgroup" {
			need[ctrl] = true
		}
	}
	available, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("container cgroup: %w", err)
	}
	var ctrls []string
	for ctrl := range need {
		if !slices.Contains(strings.Fields(string(available)), ctrl) {
			return nil, fmt.Errorf("container cgroup: linux.resources asks for the %s controller, which the cgroup v2 of %s does not have", ctrl, root)
		}
		ctrls = append(ctrls, ctrl)
	}
	sort.Strings(ctrls)
	// Every ancestor delegates the controllers to its children.
	parts := strings.Split(strings.TrimPrefix(rel, "/"), "/")
	dir := root
	for i, part := range parts {
		if len(ctrls) > 0 {
			var on []string
			for _, c := range ctrls {
				on = append(on, "+"+c)
			}
			if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(on, " ")), 0); err != nil {
				return nil, fmt.Errorf("container cgroup: enable %s in %s: %w", strings.Join(ctrls, ", "), dir, err)
			}
		}
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil && !(errors.Is(err, os.ErrExist) && i < len(parts)-1) {
			if errors.Is(err, os.ErrExist) {
				// A leftover of an earlier container of the same name
				// is empty once its processes are gone.
				if rerr := unix.Rmdir(dir); rerr != nil {
					return nil, fmt.Errorf("container cgroup %s: exists and cannot be removed: %w", rel, rerr)
				}
				err = os.Mkdir(dir, 0o755)
			}
			if err != nil {
				return nil, fmt.Errorf("container cgroup: %w", err)
			}
		}
	}
	for _, f := range slices.Sorted(maps.Keys(c.limits)) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c.limits[f]), 0); err != nil {
			_ = unix.Rmdir(dir)
			return nil, fmt.Errorf("container cgroup: write %s=%s: %w", f, c.limits[f], err)
		}
	}
	return c, nil
}

// CreateCgroup creates the cgroup of a container of spec below the cgroup
// v2 root, with the limits of linux.resources, and returns its path: what
// a runtime does before CRIU restores the container into it (CRIU puts the
// restored tasks back into their cgroup but does not restore its limits).
// A spec without a cgroupsPath gets none ("").
func CreateCgroup(root string, spec *specs.Spec) (string, error) {
	if spec == nil || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return "", nil
	}
	cg, err := createCgroup(root, spec.Linux.CgroupsPath, spec.Linux.Resources)
	if err != nil {
		return "", err
	}
	return cg.rel, nil
}

// open returns a file descriptor of the cgroup's directory, for
// CLONE_INTO_CGROUP.
func (c *cgroup) open() (int, error) {
	fd, err := unix.Open(c.dir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open container cgroup: %w", err)
	}
	return fd, nil
}

// remove deletes the cgroup once its processes are gone.
func (c *cgroup) remove() {
	_ = unix.Rmdir(c.dir())
}

// CgroupOf returns the cgroup v2 path of process pid as
// procRoot/PID/cgroup shows it (the "0::" line), in the caller's cgroup
// namespace.
func CgroupOf(procRoot string, pid int) (string, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("process %d has no cgroup v2 entry", pid)
}
