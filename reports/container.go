package reports

import (
	"fmt"
	"slices"
	"strings"
)

// ContainerInfo is how the container was built, as the guest read it from
// the running container: its own mount table and its cgroup.
type ContainerInfo struct {
	// Spec says where the runtime spec came from: "generated" for a named
	// workload (the spec containerd's CRI plugin would write), else the
	// bundle's directory on the host.
	Spec string `json:"spec"`
	// Mounts is the container's mount table, from its
	// /proc/PID/mountinfo, in order.
	Mounts []ContainerMount `json:"mounts"`
	// Cgroup is the container's cgroup v2 path as its launcher sees it
	// ("" without one); CgroupLimits the limit files written there.
	Cgroup       string            `json:"cgroup,omitempty"`
	CgroupLimits map[string]string `json:"cgroup_limits,omitempty"`
	// Notes are the keys of the spec kata-cr accepted without applying
	// them, as Kata's agent does under its defaults.
	Notes []string `json:"notes,omitempty"`
}

// ContainerMount is one mount of a container.
type ContainerMount struct {
	Path   string `json:"path"`
	FSType string `json:"fstype"`
	Source string `json:"source,omitempty"`
	// Root is the mounted subtree of the file system ("/" when whole).
	Root string `json:"root,omitempty"`
	// ReadOnly is true for a read-only mount.
	ReadOnly bool `json:"read_only,omitempty"`
}

// ExecProbe is one command run inside the container (--verify-exec-before
// before the dump, --verify-exec after the restore), like a Kubernetes
// exec probe: it passes when it exits 0.
type ExecProbe struct {
	// Phase is "before" (before the dump) or "after" (in the restored
	// container).
	Phase string   `json:"phase"`
	Args  []string `json:"args"`
	// ExitCode is -1 when the command did not exit (it could not start,
	// a signal ended it, or it ran out of time).
	ExitCode int `json:"exit_code"`
	Signal   int `json:"signal,omitempty"`
	// Output is stdout and stderr together, clipped.
	Output    string  `json:"output,omitempty"`
	Truncated bool    `json:"truncated,omitempty"`
	Seconds   float64 `json:"seconds"`
	// Attempts is how many runs it took: a before-probe is retried until
	// it passes, as a startup probe is.
	Attempts int `json:"attempts"`
	// Error says why the command could not be run.
	Error string `json:"error,omitempty"`
}

// The phases of an ExecProbe.
const (
	ProbeBefore = "before"
	ProbeAfter  = "after"
)

// Passed reports whether the probe's command exited 0.
func (p ExecProbe) Passed() bool { return p.Error == "" && p.ExitCode == 0 && p.Signal == 0 }

// Summary says in one line how the container was built: its spec, its
// file system types and its cgroup.
func (c *ContainerInfo) Summary() string {
	var types []string
	for _, m := range c.Mounts {
		if !slices.Contains(types, m.FSType) {
			types = append(types, m.FSType)
		}
	}
	s := fmt.Sprintf("%s spec, %d mounts (%s)", c.Spec, len(c.Mounts), strings.Join(types, ", "))
	if c.Cgroup != "" {
		s += ", cgroup " + c.Cgroup
	}
	return s
}
