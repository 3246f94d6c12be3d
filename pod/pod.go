// Package pod reads and checks a pod description: several containers that
// one Kata sandbox (one guest) runs together, sharing the guest's network
// namespace, the sandbox's /etc files, IPC and UTS namespaces (unless
// share_ipc is false) and emptyDir-like volumes. A mistake is one line
// naming the file, the line and the key (a *tomlfile.Error), found before
// anything boots.
package pod

import (
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/kata-cr/kata-cr/internal/safefile"
	"github.com/kata-cr/kata-cr/internal/tomlfile"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// Pod is a checked pod description.
type Pod struct {
	// File is the description's path, for messages.
	File string `json:"file,omitempty"`
	Name string `json:"name"`
	// ShareIPC gives every container the sandbox's IPC and UTS namespaces
	// (Kubernetes' default); false gives each container its own.
	ShareIPC   bool        `json:"share_ipc"`
	Volumes    []string    `json:"volumes,omitempty"`
	Containers []Container `json:"containers"`
}

// Container is one container of the pod: a named workload or a command.
type Container struct {
	Name     string   `json:"name"`
	Workload string   `json:"workload,omitempty"`
	Command  []string `json:"command,omitempty"`
	// Mounts are the pod's volumes this container mounts.
	Mounts []Mount `json:"mounts,omitempty"`
	// VerifyExec are its probes: each an argv run in the container before
	// the dump and in the restored container.
	VerifyExec [][]string `json:"verify_exec,omitempty"`
	// Line is where the file declares it.
	Line int `json:"-"`
}

// Mount is a volume of the pod mounted at Path in a container.
type Mount struct {
	Volume string `json:"volume"`
	Path   string `json:"path"`
}

// Lookup is the container named name, false when there is none.
func (p *Pod) Lookup(name string) (Container, bool) {
	for _, c := range p.Containers {
		if c.Name == name {
			return c, true
		}
	}
	return Container{}, false
}

// Names are the containers' names, in the file's order.
func (p *Pod) Names() []string {
	out := make([]string, 0, len(p.Containers))
	for _, c := range p.Containers {
		out = append(out, c.Name)
	}
	return out
}

// The file as TOML has it.
type fileVolume struct {
	Name string `toml:"name"`
}

type fileContainer struct {
	Name       string     `toml:"name"`
	Workload   string     `toml:"workload"`
	Command    []string   `toml:"command"`
	Bundle     string     `toml:"bundle"`
	Volumes    []string   `toml:"volumes"`
	VerifyExec [][]string `toml:"verify_exec"`
}

type file struct {
	Name      string          `toml:"name"`
	ShareIPC  *bool           `toml:"share_ipc"`
	Volume    []fileVolume    `toml:"volume"`
	Container []fileContainer `toml:"container"`
}

var keys = tomlfile.Keys{Known: map[string]string{
	"":          "name, share_ipc, volume, container",
	"volume":    "name",
	"container": "name, workload, command, bundle, volumes, verify_exec",
}}

// maxSize bounds what is read of a pod file.
const maxSize = 1 << 20

// nameRE is a pod's, a container's or a volume's name: a DNS label, as
// Kubernetes has them.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Load reads and checks the pod file at p.
func Load(p string) (*Pod, error) {
	f, err := safefile.Open(p)
	if err != nil {
		return nil, &tomlfile.Error{File: p, Msg: fmt.Sprintf("cannot read the pod: %v", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, &tomlfile.Error{File: p, Msg: fmt.Sprintf("cannot read the pod: %v", err)}
	}
	if len(data) > maxSize {
		return nil, &tomlfile.Error{File: p, Msg: fmt.Sprintf("the pod is over %d bytes", maxSize)}
	}
	return Parse(p, data)
}

// Parse checks a pod file's text; name is the file, for messages.
func Parse(name string, data []byte) (*Pod, error) {
	var f file
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, tomlfile.DecodeError(name, err)
	}
	ps := &parser{name: name, loc: tomlfile.NewLocator(data)}
	if err := ps.loc.Undecoded(name, md.Undecoded(), keys); err != nil {
		return nil, err
	}
	return ps.pod(&f)
}

type parser struct {
	name string
	loc  *tomlfile.Locator
}

// errAt is a mistake at key of the idx-th [[table]] (table "" and idx -1:
// the top level).
func (ps *parser) errAt(table string, idx int, key, format string, args ...any) error {
	full := key
	if table != "" {
		full = table + "." + key
		if key == "" {
			full = table
		}
	}
	return &tomlfile.Error{File: ps.name, Line: ps.loc.Line(table, idx, key), Key: full, Msg: fmt.Sprintf(format, args...)}
}

func (ps *parser) pod(f *file) (*Pod, error) {
	p := &Pod{File: ps.name, Name: f.Name, ShareIPC: f.ShareIPC == nil || *f.ShareIPC}
	if !nameRE.MatchString(f.Name) {
		return nil, ps.errAt("", -1, "name", "%q is not a pod name: lower-case letters, digits and '-', at most 63", f.Name)
	}
	vols := map[string]int{}
	for i, v := range f.Volume {
		if !nameRE.MatchString(v.Name) {
			return nil, ps.errAt("volume", i, "name", "%q is not a volume name: lower-case letters, digits and '-', at most 63", v.Name)
		}
		if j, dup := vols[v.Name]; dup {
			return nil, ps.errAt("volume", i, "name", "volume %q is declared twice (first at line %d)", v.Name, ps.loc.Line("volume", j, ""))
		}
		vols[v.Name] = i
		p.Volumes = append(p.Volumes, v.Name)
	}
	if len(f.Container) == 0 {
		return nil, &tomlfile.Error{File: ps.name, Msg: "no containers: add [[container]] tables"}
	}
	seen := map[string]int{}
	used := map[string]bool{}
	for i, fc := range f.Container {
		c, err := ps.container(i, fc, vols)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[c.Name]; dup {
			return nil, ps.errAt("container", i, "name", "container %q is declared twice (first at line %d)", c.Name, ps.loc.Line("container", j, ""))
		}
		seen[c.Name] = i
		for _, m := range c.Mounts {
			used[m.Volume] = true
		}
		p.Containers = append(p.Containers, c)
	}
	for i, v := range f.Volume {
		if !used[v.Name] {
			return nil, ps.errAt("volume", i, "name", "volume %q is mounted by no container", v.Name)
		}
	}
	return p, nil
}

func (ps *parser) container(i int, fc fileContainer, vols map[string]int) (Container, error) {
	c := Container{Name: fc.Name, Workload: fc.Workload, Command: fc.Command, VerifyExec: fc.VerifyExec, Line: ps.loc.Line("container", i, "")}
	if !nameRE.MatchString(fc.Name) {
		return c, ps.errAt("container", i, "name", "%q is not a container name: lower-case letters, digits and '-', at most 63", fc.Name)
	}
	switch {
	case fc.Bundle != "":
		return c, ps.errAt("container", i, "bundle", "a pod's container from an OCI bundle is not supported yet: give a workload or a command")
	case fc.Workload != "" && len(fc.Command) > 0:
		return c, ps.errAt("container", i, "command", "give either workload or command, not both")
	case fc.Workload != "":
		if fc.Workload == container.CommandWorkload || fc.Workload == container.BundleWorkload {
			return c, ps.errAt("container", i, "workload", "%q is not a registered workload: give the command with command = [...]", fc.Workload)
		}
		if _, err := container.Lookup(fc.Workload); err != nil {
			return c, ps.errAt("container", i, "workload", "unknown workload %q: known workloads are %s", fc.Workload, strings.Join(container.Names(), ", "))
		}
	case len(fc.Command) > 0:
		if fc.Command[0] == "" {
			return c, ps.errAt("container", i, "command", "the command's first word is empty")
		}
	default:
		return c, ps.errAt("container", i, "", "container %q has neither workload nor command", fc.Name)
	}
	paths := map[string]bool{}
	for _, v := range fc.Volumes {
		name, at, ok := strings.Cut(v, ":")
		if !ok || name == "" || at == "" {
			return c, ps.errAt("container", i, "volumes", "%q: want NAME:/path", v)
		}
		if _, ok := vols[name]; !ok {
			return c, ps.errAt("container", i, "volumes", "%q: no [[volume]] is named %q", v, name)
		}
		if !path.IsAbs(at) || path.Clean(at) != at || at == "/" {
			return c, ps.errAt("container", i, "volumes", "%q: the mount point must be a clean absolute path other than /", v)
		}
		for _, sys := range []string{"/proc", "/sys", "/dev", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
			if at == sys || strings.HasPrefix(at, sys+"/") {
				return c, ps.errAt("container", i, "volumes", "%q: %s belongs to the runtime", v, sys)
			}
		}
		if paths[at] {
			return c, ps.errAt("container", i, "volumes", "%q: %s is mounted twice", v, at)
		}
		paths[at] = true
		c.Mounts = append(c.Mounts, Mount{Volume: name, Path: at})
	}
	for _, argv := range fc.VerifyExec {
		if len(argv) == 0 || argv[0] == "" {
			return c, ps.errAt("container", i, "verify_exec", "a probe is an argv: a non-empty array of strings with a non-empty first word")
		}
	}
	return c, nil
}
