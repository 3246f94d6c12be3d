package checks

import (
	"os"

	"github.com/prometheus/procfs"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/kernel"
)

// Env is what checks read. Roots are injected so tests can point a check
// at a fixture tree instead of the live system.
type Env struct {
	// ProcRoot and SysRoot are the procfs and sysfs mount points.
	ProcRoot string
	SysRoot  string
	// Proc is procfs.NewFS(ProcRoot).
	Proc procfs.FS
	// Root is true when the checks run with root privileges.
	Root bool
	// KernelRelease is the running (or checked) kernel's release.
	KernelRelease string
	// ModulesDir is /lib/modules/<release> of that kernel.
	ModulesDir string
	// Config is the kernel configuration, nil when none could be read;
	// ConfigSource says where it came from or why there is none.
	Config       *kernel.Config
	ConfigSource string
	// CRIU is the criu binary to probe; nil when none was found, and
	// CRIUMissing then says why.
	CRIU        *criu.Binary
	CRIUMissing string
	// PID is the root of the process tree to check, 0 for none.
	PID int
}

// NewHostEnv returns an Env for the machine kata-cr runs on.
func NewHostEnv(procRoot, sysRoot string) (*Env, error) {
	fs, err := procfs.NewFS(procRoot)
	if err != nil {
		return nil, err
	}
	return &Env{ProcRoot: procRoot, SysRoot: sysRoot, Proc: fs, Root: os.Geteuid() == 0}, nil
}

// unmet returns why needs are not met, or "" when they are.
func (e *Env) unmet(needs []Need) string {
	for _, n := range needs {
		switch n {
		case NeedRoot:
			if !e.Root {
				return "needs root: run kata-cr as root"
			}
		case NeedPID:
			if e.PID == 0 {
				return "no process given: pass --pid PID"
			}
		case NeedCRIU:
			if e.CRIU == nil {
				if e.CRIUMissing != "" {
					return e.CRIUMissing
				}
				return "no criu binary found: install criu or pass --criu PATH"
			}
		case NeedConfig:
			if e.Config == nil {
				if e.ConfigSource != "" {
					return e.ConfigSource
				}
				return "no kernel config found: pass --kernel-config FILE"
			}
		}
	}
	return ""
}
