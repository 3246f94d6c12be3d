package guestimage

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kata-cr/kata-cr/kernel"
)

// AgentModules are what the agent needs loaded before it can talk to the
// host: the virtio PCI transport and the virtio-serial driver. Debian
// builds both as modules; Kata builds them in.
var AgentModules = []string{"virtio_pci", "virtio_console"}

// ContainerModules are what a bundle's container needs in the guest: the
// virtio-9p transport and file system that share the bundle's rootfs, and
// overlay for the container's writable root over it. Debian builds them as
// modules; the agent loads them only for a bundle.
var ContainerModules = []string{"9pnet_virtio", "9p", "overlay"}

// Modules is the set of kernel modules an image ships for one kernel.
type Modules struct {
	// HostDir is the kernel's modules directory on the host.
	HostDir string
	// Files is every module shipped, in load order, with paths relative
	// to HostDir.
	Files []kernel.ModuleFile
	// Agent are the names the agent loads for itself (empty when built in).
	Agent []string
	// CRIU are the CRIU module names this kernel has as loadable modules.
	CRIU []string
	// Optional are the modules of optional requirements (macvlan, bridge,
	// binfmt_misc), shipped so that the fixers can load them too.
	Optional []string
	// Container are the ContainerModules this kernel has as loadable
	// modules.
	Container []string
	// Missing are required or recommended CRIU modules this kernel
	// neither ships nor builds in.
	Missing []string
}

// ResolveModules decides which of the kernel's modules go into the image:
// the CRIU modules (kernel.CRIUModules, and those of the optional
// requirements) that the kernel has, and the agent's, each with its dependencies resolved through that kernel's
// modules.dep, never from a fixed list (names and dependencies differ
// between kernels).
func ResolveModules(modulesDir string) (*Modules, error) {
	dep, err := kernel.LoadModulesDep(modulesDir)
	if err != nil {
		return nil, err
	}
	m := &Modules{HostDir: modulesDir}
	for _, n := range AgentModules {
		switch {
		case dep.Builtin(n):
		case dep.Has(n):
			m.Agent = append(m.Agent, n)
		default:
			return nil, fmt.Errorf("kernel in %s has no %s module and does not build it in: the guest agent could not talk to the host", modulesDir, n)
		}
	}
	for _, n := range kernel.CRIUModules() {
		switch {
		case dep.Builtin(n):
		case dep.Has(n):
			m.CRIU = append(m.CRIU, n)
		default:
			m.Missing = append(m.Missing, n)
		}
	}
	needed := map[string]bool{}
	for _, n := range kernel.CRIUModules() {
		needed[n] = true
	}
	for _, r := range kernel.Requirements("") {
		if r.Module != "" && !needed[r.Module] && !dep.Builtin(r.Module) && dep.Has(r.Module) {
			needed[r.Module] = true
			m.Optional = append(m.Optional, r.Module)
		}
	}
	for _, n := range ContainerModules {
		if !dep.Builtin(n) && dep.Has(n) {
			m.Container = append(m.Container, n)
		}
	}
	m.Files, err = dep.Closure(append(append(append(append([]string{}, m.Agent...), m.CRIU...), m.Optional...), m.Container...)...)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Names returns the names of the shipped modules.
func (m *Modules) Names() []string {
	out := make([]string, len(m.Files))
	for i, f := range m.Files {
		out[i] = f.Name
	}
	return out
}

// depmodIndex writes, into dir, the depmod files of a modules directory
// that holds only the shipped modules: modules.dep and modules.alias cut
// down to them, modules.softdep, modules.builtin and
// modules.builtin.modinfo as they are. In the guest, "present" then means
// "in the image", and kernel.LoadModules resolves the same closure there.
func (m *Modules) depmodIndex(dir string) ([]string, error) {
	shipped := map[string]bool{}
	for _, f := range m.Files {
		shipped[kernel.NormalizeModule(f.Path)] = true
	}
	var written []string
	filter := func(name string, keep func(line string) bool) error {
		data, err := os.ReadFile(filepath.Join(m.HostDir, name))
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		var out bytes.Buffer
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if l := sc.Text(); keep(l) {
				out.WriteString(l)
				out.WriteByte('\n')
			}
		}
		if err := sc.Err(); err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), out.Bytes(), 0o644); err != nil {
			return err
		}
		written = append(written, name)
		return nil
	}
	all := func(string) bool { return true }
	if err := filter("modules.dep", func(l string) bool {
		file, _, ok := strings.Cut(l, ":")
		return ok && shipped[kernel.NormalizeModule(file)]
	}); err != nil {
		return nil, err
	}
	if err := filter("modules.alias", func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 3 && shipped[kernel.NormalizeModule(f[2])]
	}); err != nil {
		return nil, err
	}
	for _, name := range []string{"modules.softdep", "modules.builtin"} {
		if err := filter(name, all); err != nil {
			return nil, err
		}
	}
	// modules.builtin.modinfo is NUL-separated: copy it whole.
	if data, err := os.ReadFile(filepath.Join(m.HostDir, "modules.builtin.modinfo")); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "modules.builtin.modinfo"), data, 0o644); err != nil {
			return nil, err
		}
		written = append(written, "modules.builtin.modinfo")
	}
	sort.Strings(written)
	return written, nil
}
