package kernel

import (
	"strings"

	"github.com/kata-cr/kata-cr/reports"
)

// Requirement is one kernel option CRIU needs or benefits from.
type Requirement struct {
	// Option is the Kconfig name without CONFIG_.
	Option string
	// Level: required means criu dump (or the kerndat probe every criu
	// command runs first) fails without it.
	Level reports.Level
	// Title is the option's Kconfig prompt.
	Title string
	// Breaks says what fails without the option.
	Breaks string
	// Module is the module that provides the option when it is =m.
	Module string
	// MinCRIU is the first CRIU version (major*10000+minor*100+sublevel)
	// that needs the option; 0 for all.
	MinCRIU int
	// RelaxedFrom is the CRIU version from which a missing option is only
	// recommended (CRIU learnt to do without it); 0 for never.
	RelaxedFrom int
	// Arches limits the requirement to these Kata arch names; empty for all.
	Arches []string
	// Enable lists the options a config fragment sets to turn this one on,
	// dependencies first; empty means just Option.
	Enable []string
	// Hint is a note on dependencies, "" for none.
	Hint string
	// NeedsBefore lists options that must also be set on kernels older
	// than a release.
	NeedsBefore []VersionedDep
}

// VersionedDep is an option needed on kernels before Release.
type VersionedDep struct {
	Release string
	Option  string
}

// Sources of the table: criu.org's "Linux kernel" page (the required and
// the optional lists), CRIU's kerndat probes as seen failing in a guest
// (shared FACTS: sock-diag modules, nf_tables, tun, veth), and Linux 6.1's
// Kconfig files for titles and dependencies.
var requirements = []Requirement{
	{Option: "CHECKPOINT_RESTORE", Level: reports.Required, Title: "Checkpoint/restore support",
		Breaks:      "criu cannot run: kcmp, prctl(PR_SET_MM), /proc/PID/map_files and the children files are missing",
		Hint:        "before Linux 4.19 it is visible only with CONFIG_EXPERT=y",
		NeedsBefore: []VersionedDep{{Release: "4.19", Option: "EXPERT"}}},
	{Option: "NAMESPACES", Level: reports.Required, Title: "Namespaces support",
		Breaks: "no namespaces: a container cannot be dumped or restored"},
	{Option: "UTS_NS", Level: reports.Required, Title: "UTS namespace",
		Breaks: "criu cannot dump or restore a container's hostname (UTS namespace)", Enable: []string{"NAMESPACES", "UTS_NS"}},
	{Option: "IPC_NS", Level: reports.Required, Title: "IPC namespace",
		Breaks: "criu cannot dump or restore a container's IPC namespace", Enable: []string{"NAMESPACES", "SYSVIPC", "IPC_NS"}},
	{Option: "PID_NS", Level: reports.Required, Title: "PID Namespaces",
		Breaks: "criu cannot restore a container's pid namespace with the same pids", Enable: []string{"NAMESPACES", "PID_NS"}},
	{Option: "NET_NS", Level: reports.Required, Title: "Network namespace",
		Breaks: "criu cannot dump or restore a network namespace (kerndat probes fail)", Enable: []string{"NAMESPACES", "NET_NS"}},
	{Option: "SYSVIPC_SYSCTL", Level: reports.Required, Title: "System V IPC sysctls",
		Breaks: "criu cannot read or restore the IPC namespace's /proc/sys/kernel settings",
		Enable: []string{"SYSVIPC", "PROC_SYSCTL"},
		Hint:   "has no prompt: on when SYSVIPC and PROC_SYSCTL are"},
	{Option: "FHANDLE", Level: reports.Required, Title: "open by fhandle syscalls",
		Breaks: "no name_to_handle_at/open_by_handle_at: criu cannot dump inotify or fanotify watches and its kerndat probe fails"},
	{Option: "EVENTFD", Level: reports.Required, Title: "Enable eventfd() system call",
		Breaks: "no eventfd(): criu check fails and processes using eventfds cannot be restored"},
	{Option: "EPOLL", Level: reports.Required, Title: "Enable eventpoll support",
		Breaks: "no epoll: criu check fails and epoll-based servers cannot be restored"},
	{Option: "UNIX_DIAG", Level: reports.Required, Title: "UNIX: socket monitoring interface", Module: "unix_diag",
		Breaks: "criu cannot list unix sockets: \"sockets: Diag module missing\"", Enable: []string{"UNIX", "UNIX_DIAG"}},
	{Option: "INET_DIAG", Level: reports.Required, Title: "INET: socket monitoring interface", Module: "inet_diag",
		Breaks: "criu cannot list TCP and UDP sockets: \"sockets: Diag module missing\"", Enable: []string{"INET", "INET_DIAG"}},
	{Option: "INET_TCP_DIAG", Level: reports.Required, Title: "TCP: socket monitoring interface", Module: "tcp_diag",
		Breaks: "criu cannot list TCP sockets: \"sockets: Diag module missing\"", Enable: []string{"INET", "INET_DIAG"},
		Hint: "has no prompt: follows INET_DIAG"},
	{Option: "INET_UDP_DIAG", Level: reports.Required, Title: "UDP: socket monitoring interface", Module: "udp_diag",
		Breaks: "criu cannot list UDP sockets: \"sockets: Diag module missing\"", Enable: []string{"INET", "INET_DIAG", "INET_UDP_DIAG"}},
	{Option: "PACKET_DIAG", Level: reports.Required, Title: "Packet: sockets monitoring interface", Module: "af_packet_diag",
		Breaks: "criu cannot list packet sockets: \"sockets: Diag module missing\"", Enable: []string{"PACKET", "PACKET_DIAG"}},
	{Option: "NETLINK_DIAG", Level: reports.Required, Title: "NETLINK: socket monitoring interface", Module: "netlink_diag",
		Breaks: "criu cannot list netlink sockets: \"sockets: Diag module missing\""},
	{Option: "NETFILTER_XT_MARK", Level: reports.Required, Title: "nfmark target and match support", Module: "xt_mark",
		Breaks: "the iptables network lock criu uses during dump and restore cannot mark packets",
		Enable: []string{"NETFILTER", "NETFILTER_XTABLES", "NETFILTER_XT_MARK"}},
	{Option: "TUN", Level: reports.Required, Title: "Universal TUN/TAP device driver support", Module: "tun",
		Breaks: "criu's kerndat probe of /dev/net/tun fails and tun devices cannot be restored",
		Enable: []string{"NETDEVICES", "NET_CORE", "TUN"}},
	{Option: "NF_TABLES", Level: reports.Required, Title: "Netfilter nf_tables support", Module: "nf_tables",
		Breaks:      "criu before 4.1 fails at start: \"create table inet CRIU ... Operation not supported\", \"kerndat_has_nftables_concat failed\"; 4.1 only warns",
		RelaxedFrom: 40100,
		Enable:      []string{"NETFILTER", "NF_TABLES", "NF_TABLES_INET"}},
	{Option: "MEMBARRIER", Level: reports.Required, Title: "Enable membarrier() system call", MinCRIU: 31900,
		Breaks: "criu 3.19 and later need membarrier() and fail without it"},
	{Option: "PROC_PAGE_MONITOR", Level: reports.Required, Title: "Enable /proc page monitoring",
		Breaks: "no /proc/PID/pagemap: criu cannot tell which pages to dump"},

	{Option: "MEM_SOFT_DIRTY", Level: reports.Recommended, Title: "Track memory changes",
		Breaks: "no soft-dirty tracking: criu pre-dump and incremental dumps (--track-mem) fail",
		Arches: []string{"x86_64", "s390", "powerpc"}, Enable: []string{"CHECKPOINT_RESTORE", "MEM_SOFT_DIRTY"}},
	{Option: "VETH", Level: reports.Recommended, Title: "Virtual ethernet pair device", Module: "veth",
		Breaks: "criu cannot restore a network namespace that holds veth devices"},

	{Option: "INOTIFY_USER", Level: reports.Optional, Title: "Inotify support for userspace",
		Breaks: "workloads cannot use inotify (criu dumps inotify watches when they exist)"},
	{Option: "FANOTIFY", Level: reports.Optional, Title: "Filesystem wide access notification",
		Breaks: "workloads cannot use fanotify"},
	{Option: "MEMCG", Level: reports.Optional, Title: "Memory controller",
		Breaks: "criu cannot restore memory cgroup settings"},
	{Option: "CGROUP_DEVICE", Level: reports.Optional, Title: "Device controller",
		Breaks: "criu cannot restore device cgroup rules"},
	{Option: "MACVLAN", Level: reports.Optional, Title: "MAC-VLAN support", Module: "macvlan",
		Breaks: "criu cannot restore macvlan devices"},
	{Option: "BRIDGE", Level: reports.Optional, Title: "802.1d Ethernet Bridging", Module: "bridge",
		Breaks: "criu cannot restore bridge devices"},
	{Option: "BINFMT_MISC", Level: reports.Optional, Title: "Kernel support for MISC binaries", Module: "binfmt_misc",
		Breaks: "criu cannot restore binfmt_misc mounts"},
	{Option: "AUTOFS_FS", Level: reports.Optional, Title: "Kernel automounter support", Module: "autofs4",
		Breaks: "criu cannot dump or restore autofs mounts, and criu check --experimental fails (\"failed to mount autofs\")"},
	{Option: "IA32_EMULATION", Level: reports.Optional, Title: "IA32 Emulation", Arches: []string{"x86_64"},
		Breaks: "32-bit processes cannot run, so criu cannot dump them"},
	{Option: "USERFAULTFD", Level: reports.Optional, Title: "Enable userfaultfd() system call",
		Breaks: "no lazy restore (criu restore --lazy-pages, post-copy migration)"},
	{Option: "IKCONFIG_PROC", Level: reports.Optional, Title: "Enable access to .config through /proc/config.gz",
		Breaks: "the guest cannot show its own config: kata-cr needs the config file beside the kernel",
		Enable: []string{"IKCONFIG", "IKCONFIG_PROC"}},
}

// Requirements returns the requirement table for a Kata arch name; ""
// returns every row.
func Requirements(arch string) []Requirement {
	out := make([]Requirement, 0, len(requirements))
	for _, r := range requirements {
		if r.AppliesTo(arch) {
			out = append(out, r)
		}
	}
	return out
}

// Lookup returns the requirement for option (with or without CONFIG_).
func Lookup(option string) (Requirement, bool) {
	option = strings.TrimPrefix(option, "CONFIG_")
	for _, r := range requirements {
		if r.Option == option {
			return r, true
		}
	}
	return Requirement{}, false
}

// AppliesTo reports whether the requirement holds on arch ("" for any).
func (r Requirement) AppliesTo(arch string) bool {
	if arch == "" || len(r.Arches) == 0 {
		return true
	}
	for _, a := range r.Arches {
		if a == arch {
			return true
		}
	}
	return false
}

// LevelFor is the requirement's level for a CRIU version (0 when unknown):
// an option only newer CRIU needs is optional for older CRIU, and one that
// newer CRIU can do without is only recommended there.
func (r Requirement) LevelFor(criuVersion int) reports.Level {
	if criuVersion <= 0 {
		return r.Level
	}
	if r.MinCRIU > 0 && criuVersion < r.MinCRIU {
		return reports.Optional
	}
	if r.RelaxedFrom > 0 && criuVersion >= r.RelaxedFrom && r.Level == reports.Required {
		return reports.Recommended
	}
	return r.Level
}

// EnableOptions returns the options to set to turn the requirement on.
func (r Requirement) EnableOptions() []string {
	if len(r.Enable) > 0 {
		return r.Enable
	}
	return []string{r.Option}
}

// CRIUModules returns the modules CRIU needs loaded in a guest whose kernel
// builds the required and recommended options as modules. Their own
// dependencies (nfnetlink, libcrc32c, a crc32c provider for nf_tables) are
// not listed: resolve them with ModulesDep.Closure, because they differ
// between kernels.
func CRIUModules() []string {
	var out []string
	for _, r := range requirements {
		if r.Module != "" && r.Level != reports.Optional {
			out = append(out, r.Module)
		}
	}
	return out
}

// OptionStatus is how a config meets one requirement.
type OptionStatus struct {
	Requirement
	State State
	// Value is the option's value as written, "" when missing.
	Value string
	// Origin says where the value comes from: the fragment that set it,
	// why Kconfig turns it on, or "" for a plain config.
	Origin string
}

// Evaluate returns how c meets each requirement that applies to its arch.
func Evaluate(c *Config) []OptionStatus {
	reqs := Requirements(c.Arch)
	out := make([]OptionStatus, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, c.Status(r))
	}
	return out
}

// Status returns how c meets requirement r.
func (c *Config) Status(r Requirement) OptionStatus {
	st := OptionStatus{Requirement: r, State: c.State(r.Option), Value: c.Values[r.Option]}
	if why, ok := c.Implied[r.Option]; ok {
		st.Origin = why
	} else if o, ok := c.Origin[r.Option]; ok && c.Fragments != nil {
		if st.State == Missing {
			st.Origin = "unset in " + o
		} else {
			st.Origin = "set in " + o
		}
	} else if c.Fragments != nil && st.State == Missing {
		st.Origin = "no fragment sets it"
	}
	return st
}

// MissingAt returns the requirements of statuses that are missing at one of
// levels (all levels when none is given).
func MissingAt(statuses []OptionStatus, levels ...reports.Level) []Requirement {
	var out []Requirement
	for _, s := range statuses {
		if s.State != Missing {
			continue
		}
		if len(levels) == 0 {
			out = append(out, s.Requirement)
			continue
		}
		for _, l := range levels {
			if s.Level == l {
				out = append(out, s.Requirement)
				break
			}
		}
	}
	return out
}
