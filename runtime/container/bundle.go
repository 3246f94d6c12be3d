package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// BundleConfig is the name of a bundle's runtime spec.
const BundleConfig = "config.json"

// BundleWorkload is the workload name of a user's bundle in reports and
// manifests.
const BundleWorkload = "bundle"

// FromBundle is the workload of a bundle whose rootfs is the virtio-9p
// share tagged tag: its process is the spec's, it is ready when running
// and verified when the restored init runs the same argv (its own probes
// are the user's --verify-exec commands).
func FromBundle(spec *specs.Spec, tag string) Workload {
	var args []string
	if spec.Process != nil {
		args = append(args, spec.Process.Args...)
	}
	return Workload{
		Name:        BundleWorkload,
		Description: "the OCI bundle's " + strings.Join(args, " "),
		Args:        args,
		Spec:        spec,
		RootfsTag:   tag,
		Ready:       readyRunning,
		Snapshot:    snapshotCmdline,
		Verify:      verifyCmdline,
	}
}

// Bundle is a user's OCI bundle: its runtime spec and the absolute path of
// its rootfs on this machine.
type Bundle struct {
	Dir    string
	Spec   *specs.Spec
	Rootfs string
}

// UnsupportedError says which key of a runtime spec kata-cr does not
// support, and why.
type UnsupportedError struct {
	Key string
	Why string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s: %s: %s", BundleConfig, e.Key, e.Why)
}

func unsupported(key, why string) error { return &UnsupportedError{Key: key, Why: why} }

// LoadBundle reads the bundle in dir: config.json, strictly (a key the
// runtime spec does not define is an error), checked by CheckSpec, and its
// rootfs, which must be a directory.
func LoadBundle(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(abs, BundleConfig))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %s: %w", dir, BundleConfig, errors.Unwrap(err))
	}
	spec, err := DecodeSpec(data)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := CheckSpec(spec); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(abs, rootfs)
	}
	fi, err := os.Stat(rootfs)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: root.path %s: %w", dir, spec.Root.Path, errors.Unwrap(err))
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("bundle %s: root.path %s: not a directory", dir, spec.Root.Path)
	}
	return &Bundle{Dir: abs, Spec: spec, Rootfs: rootfs}, nil
}

// DecodeSpec decodes a runtime spec, refusing keys the spec does not
// define: a misspelt key would otherwise be silently ignored.
func DecodeSpec(data []byte) (*specs.Spec, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s specs.Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", BundleConfig, err)
	}
	return &s, nil
}

// supportedMountTypes are the mount types a container may ask for: the
// kernel file systems of a CRI spec. Binds of other paths are not: kata-cr
// shares only the rootfs with the guest.
var supportedMountTypes = map[string]bool{
	"proc": true, "tmpfs": true, "devpts": true, "mqueue": true, "sysfs": true, "cgroup": true, "cgroup2": true,
}

// CheckSpec refuses, with one line naming the key, what kata-cr does not
// run as Kata's agent would. Some keys are accepted without effect, as
// under Kata's defaults: SpecNotes lists them.
func CheckSpec(s *specs.Spec) error {
	if !strings.HasPrefix(s.Version, "1.") {
		return unsupported("ociVersion", fmt.Sprintf("%q: kata-cr reads runtime spec 1.x", s.Version))
	}
	if s.Root == nil || s.Root.Path == "" {
		return unsupported("root.path", "missing: give the rootfs directory")
	}
	if s.Process == nil {
		return unsupported("process", "missing: give the process to run")
	}
	if err := checkProcess(s.Process); err != nil {
		return err
	}
	for i, m := range s.Mounts {
		key := fmt.Sprintf("mounts[%d] (%s)", i, m.Destination)
		if !filepath.IsAbs(m.Destination) {
			return unsupported(key+".destination", "must be an absolute path")
		}
		if !supportedMountTypes[m.Type] || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind") {
			return unsupported(key, fmt.Sprintf("a %q mount: kata-cr shares only the bundle's rootfs with the guest, and mounts only proc, tmpfs, devpts, mqueue, sysfs and cgroup file systems", mountKind(m)))
		}
		if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
			return unsupported(key+".uidMappings", "id-mapped mounts are not supported")
		}
	}
	//lint:ignore SA1019 a config.json may still carry the deprecated prestart hooks: they are refused too
	if s.Hooks != nil && (len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0 || len(s.Hooks.CreateContainer) > 0 ||
		len(s.Hooks.StartContainer) > 0 || len(s.Hooks.Poststart) > 0 || len(s.Hooks.Poststop) > 0) {
		return unsupported("hooks", "hooks run host programs, which a guest does not have")
	}
	switch {
	case s.Solaris != nil:
		return unsupported("solaris", "not a Linux container")
	case s.Windows != nil:
		return unsupported("windows", "not a Linux container")
	case s.VM != nil:
		return unsupported("vm", "kata-cr boots its own guest")
	case s.ZOS != nil:
		return unsupported("zos", "not a Linux container")
	}
	if s.Linux == nil {
		return unsupported("linux.namespaces", "missing: kata-cr runs a container in pid and mount namespaces of its own")
	}
	return checkLinux(s.Linux)
}

func mountKind(m specs.Mount) string {
	if m.Type == "" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind") {
		return "bind"
	}
	return m.Type
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func checkProcess(p *specs.Process) error {
	switch {
	case len(p.Args) == 0 || p.Args[0] == "":
		return unsupported("process.args", "empty: give the command to run")
	case p.CommandLine != "":
		return unsupported("process.commandLine", "Windows only: give process.args")
	case p.Cwd != "" && !filepath.IsAbs(p.Cwd):
		return unsupported("process.cwd", fmt.Sprintf("%q: must be an absolute path", p.Cwd))
	case p.User.Username != "":
		return unsupported("process.user.username", "Windows only: give process.user.uid and gid")
	case p.ApparmorProfile != "":
		return unsupported("process.apparmorProfile", "the guest has no AppArmor")
	case p.SelinuxLabel != "":
		return unsupported("process.selinuxLabel", "the guest has no SELinux")
	case p.IOPriority != nil:
		return unsupported("process.ioPriority", "not supported by kata-cr")
	case p.Scheduler != nil:
		return unsupported("process.scheduler", "not supported by kata-cr")
	case p.ExecCPUAffinity != nil:
		return unsupported("process.execCPUAffinity", "not supported by kata-cr")
	}
	for _, e := range p.Env {
		if !strings.Contains(e, "=") {
			return unsupported("process.env", fmt.Sprintf("%q: want NAME=VALUE", e))
		}
	}
	if c := p.Capabilities; c != nil {
		for _, set := range []struct {
			name  string
			names []string
		}{{"bounding", c.Bounding}, {"effective", c.Effective}, {"permitted", c.Permitted}, {"inheritable", c.Inheritable}, {"ambient", c.Ambient}} {
			if _, err := capSet(set.names); err != nil {
				return unsupported("process.capabilities."+set.name, err.Error())
			}
		}
	}
	for _, r := range p.Rlimits {
		if _, ok := rlimitNumbers[r.Type]; !ok {
			return unsupported("process.rlimits", fmt.Sprintf("unknown rlimit %q", r.Type))
		}
	}
	return nil
}

func checkLinux(l *specs.Linux) error {
	switch {
	case len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0:
		return unsupported("linux.uidMappings", "user namespaces are not supported")
	case strings.Contains(l.CgroupsPath, ":"):
		return unsupported("linux.cgroupsPath", fmt.Sprintf("%q: systemd's slice:prefix:name form needs systemd, which the guest does not run: give a path", l.CgroupsPath))
	case l.MountLabel != "":
		return unsupported("linux.mountLabel", "the guest has no SELinux")
	case l.IntelRdt != nil:
		return unsupported("linux.intelRdt", "not supported by kata-cr")
	case l.Personality != nil:
		return unsupported("linux.personality", "not supported by kata-cr")
	case len(l.TimeOffsets) > 0:
		return unsupported("linux.timeOffsets", "time namespaces are not supported")
	case l.MemoryPolicy != nil:
		return unsupported("linux.memoryPolicy", "not supported by kata-cr")
	case len(l.NetDevices) > 0:
		return unsupported("linux.netDevices", "the container uses the sandbox's network")
	}
	switch l.RootfsPropagation {
	case "", "private", "rprivate", "slave", "rslave":
	default:
		return unsupported("linux.rootfsPropagation", fmt.Sprintf("%q: only private and slave propagation are supported", l.RootfsPropagation))
	}
	for i, ns := range l.Namespaces {
		key := fmt.Sprintf("linux.namespaces[%d] (%s)", i, ns.Type)
		switch ns.Type {
		case specs.NetworkNamespace:
			// Always the sandbox's, as Kata does: a path is ignored.
		case specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace, specs.CgroupNamespace:
			if ns.Path != "" {
				return unsupported(key+".path", "joining another container's namespace is not supported")
			}
		default:
			return unsupported(key, "not supported by kata-cr")
		}
	}
	for _, want := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace} {
		if !slices.ContainsFunc(l.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == want }) {
			return unsupported("linux.namespaces", fmt.Sprintf("no %s namespace: kata-cr runs a container in pid and mount namespaces of its own (sharing the sandbox's is not supported)", want))
		}
	}
	for i, d := range l.Devices {
		switch d.Type {
		case "c", "b", "u", "p":
		default:
			return unsupported(fmt.Sprintf("linux.devices[%d] (%s).type", i, d.Path), fmt.Sprintf("%q: want c, b, u or p", d.Type))
		}
		if !filepath.IsAbs(d.Path) {
			return unsupported(fmt.Sprintf("linux.devices[%d].path", i), fmt.Sprintf("%q: must be an absolute path", d.Path))
		}
	}
	if r := l.Resources; r != nil {
		if err := checkResources(r); err != nil {
			return err
		}
	}
	return nil
}

func checkResources(r *specs.LinuxResources) error {
	switch {
	case r.BlockIO != nil:
		return unsupported("linux.resources.blockIO", "not supported by kata-cr")
	case len(r.HugepageLimits) > 0:
		return unsupported("linux.resources.hugepageLimits", "not supported by kata-cr")
	case r.Network != nil:
		return unsupported("linux.resources.network", "not supported by cgroup v2")
	case len(r.Rdma) > 0:
		return unsupported("linux.resources.rdma", "not supported by kata-cr")
	}
	if m := r.Memory; m != nil {
		switch {
		//lint:ignore SA1019 a config.json may still set the deprecated kernel memory limit: it is refused
		case m.Kernel != nil || m.KernelTCP != nil:
			return unsupported("linux.resources.memory.kernel", "cgroup v2 has no kernel memory limit")
		case m.Swappiness != nil:
			return unsupported("linux.resources.memory.swappiness", "cgroup v2 has no per-cgroup swappiness")
		case m.DisableOOMKiller != nil && *m.DisableOOMKiller:
			return unsupported("linux.resources.memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer")
		case m.CheckBeforeUpdate != nil:
			return unsupported("linux.resources.memory.checkBeforeUpdate", "not supported by kata-cr")
		}
	}
	if c := r.CPU; c != nil {
		switch {
		case c.RealtimeRuntime != nil || c.RealtimePeriod != nil:
			return unsupported("linux.resources.cpu.realtimeRuntime", "cgroup v2 has no real-time CPU limits")
		case c.Burst != nil:
			return unsupported("linux.resources.cpu.burst", "not supported by kata-cr")
		case c.Idle != nil:
			return unsupported("linux.resources.cpu.idle", "not supported by kata-cr")
		}
	}
	return nil
}

// SpecNotes lists what a spec asks for that kata-cr accepts and does not
// apply, as Kata's agent does not under Kata's default configuration.
func SpecNotes(s *specs.Spec) []string {
	var out []string
	if s.Linux == nil {
		return nil
	}
	if s.Linux.Seccomp != nil {
		out = append(out, "linux.seccomp: not applied, as under Kata's default configuration (disable_guest_seccomp = true: the agent drops the profile)")
	}
	if r := s.Linux.Resources; r != nil && len(r.Devices) > 0 {
		out = append(out, "linux.resources.devices: not enforced (cgroup v2 would need a BPF device program); the container's /dev has only the default devices and linux.devices")
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path != "" {
			out = append(out, "linux.namespaces network path: ignored, the container uses the sandbox's network namespace as under Kata")
		}
	}
	return out
}
