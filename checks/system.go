package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/proc"
	"github.com/kata-cr/kata-cr/reports"
)

// SystemChecks are the checks of the machine CRIU runs on that are not
// kernel options: privileges, the loopback device, devpts, the network
// lock backend, and the helpers CRIU calls.
func SystemChecks() []Check {
	return []Check{
		{ID: "system.privileges", Category: "system", Level: reports.Required,
			Title: "privileges for CRIU", Run: checkPrivileges},
		{ID: "system.loopback", Category: "system", Level: reports.Required,
			Title: "loopback device up", Run: checkLoopback},
		{ID: "system.devpts", Category: "system", Level: reports.Required,
			Title: "devpts mounted and /dev/ptmx usable", Run: checkDevpts},
		{ID: "system.ns-last-pid", Category: "system", Level: reports.Required,
			Title: "/proc/sys/kernel/ns_last_pid writable", Run: checkNsLastPid},
		{ID: "system.network-lock", Category: "system", Level: reports.Recommended,
			Title: "network lock backend for CRIU", Run: checkNetworkLock},
		{ID: "system.tar", Category: "system", Level: reports.Recommended,
			Title: "GNU tar for tmpfs mounts", Run: checkTar},
		{ID: "system.pid-max", Category: "system", Level: reports.Optional,
			Title: "pid_max", Run: checkPidMax},
	}
}

// The capabilities CRIU's privilege checks look at.
var sysCaps = []struct {
	bit  uint
	name string
}{
	{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"},
	{unix.CAP_CHECKPOINT_RESTORE, "CAP_CHECKPOINT_RESTORE"},
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"},
	{unix.CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"},
}

func checkPrivileges(_ context.Context, env *Env) []reports.Finding {
	path := filepath.Join(procRootDir(env), "self", "status")
	st, err := proc.New(procRootDir(env)).ReadSelfStatus()
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read own credentials",
			Reason: fmt.Sprintf("read %s: %v", path, err)}}
	}
	if len(st.Uid) < 2 || !st.HasCapEff {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read own credentials",
			Reason: fmt.Sprintf("%s: no Uid or CapEff line", path)}}
	}
	euid := st.Uid[1]
	has := func(bit uint) bool { return st.CapEff&(1<<bit) != 0 }
	var haveCaps, missingCaps []string
	for _, c := range sysCaps {
		if has(c.bit) {
			haveCaps = append(haveCaps, c.name)
		} else {
			missingCaps = append(missingCaps, c.name)
		}
	}
	ev := []string{
		fmt.Sprintf("%s: Uid %s, CapEff %016x", path, strings.ReplaceAll(procInts(st.Uid), " ", "\t"), st.CapEff),
		"effective: " + sysOrNone(haveCaps),
		"missing: " + sysOrNone(missingCaps),
	}
	ptrace := has(unix.CAP_SYS_PTRACE)
	switch {
	case euid == 0 && has(unix.CAP_SYS_ADMIN) && ptrace:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: "running as root with CAP_SYS_ADMIN and CAP_SYS_PTRACE"}}
	case has(unix.CAP_CHECKPOINT_RESTORE) && ptrace:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: "not root, but CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE: criu works only in unprivileged mode, for processes of this user",
			Fix: &reports.Fix{Description: "run as root, or pass --unprivileged to criu (CRIU 3.16 or later)",
				CRIU: criuopt.Set{Unprivileged: true}}}}
	default:
		what := "not root"
		if euid == 0 {
			what = "root without CAP_SYS_ADMIN and CAP_SYS_PTRACE (a restricted container?)"
		}
		return []reports.Finding{{Status: reports.Fail, Evidence: ev,
			Summary: what + ": criu cannot checkpoint or restore",
			Fix:     &reports.Fix{Description: "run kata-cr and criu as root with all capabilities (or with CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE and criu --unprivileged)"}}}
	}
}

func sysOrNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// sysReadTrim reads a small sysfs or procfs file.
func sysReadTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// checkLoopback reads lo's flags from sysfs. sysfs shows the network
// namespace of whoever mounted it, which is the one criu will probe when
// kata-cr runs beside the workload.
func checkLoopback(_ context.Context, env *Env) []reports.Finding {
	dir := filepath.Join(env.SysRoot, "class", "net", "lo")
	fix := &reports.Fix{Description: "bring the loopback device up (ip link set lo up)",
		AutoFixable: true, Fixer: FixerIDLoopbackUp}
	flagsS, err := sysReadTrim(filepath.Join(dir, "flags"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(env.SysRoot, "class", "net")); serr != nil {
			return []reports.Finding{{Status: reports.Skip,
				Reason: fmt.Sprintf("no %s: mount sysfs or pass the sysfs root", filepath.Join(env.SysRoot, "class", "net"))}}
		}
		return []reports.Finding{{Status: reports.Fail, Summary: "no loopback device in this network namespace",
			Evidence: []string{dir + ": does not exist"},
			Fix:      &reports.Fix{Description: "build the kernel with networking (CONFIG_NET) and bring lo up"}}}
	}
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read loopback flags", Reason: err.Error()}}
	}
	flags, err := strconv.ParseUint(strings.TrimPrefix(flagsS, "0x"), 16, 32)
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read loopback flags",
			Reason: fmt.Sprintf("%s/flags: %q is not a hex number", dir, flagsS)}}
	}
	oper, _ := sysReadTrim(filepath.Join(dir, "operstate"))
	ev := []string{fmt.Sprintf("%s: flags %s, operstate %s", dir, flagsS, oper)}
	if flags&unix.IFF_UP == 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: ev, Fix: fix,
			Summary: "loopback device lo is down: criu check fails (kerndat_tcp_repair: Network is unreachable)"}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "loopback device lo is up"}}
}

// LoopbackFixer brings lo up in the network namespace of the calling
// thread, with the SIOCSIFFLAGS ioctl (what `ip link set lo up` does).
func LoopbackFixer() Fixer {
	return Fixer{ID: FixerIDLoopbackUp, Title: "bring the loopback device up",
		Apply: func(_ context.Context, _ *Env, _ reports.Finding) (reports.Action, error) {
			a := reports.Action{Summary: "bring lo up"}
			if err := sysSetLinkUp("lo"); err != nil {
				return a, err
			}
			a.Applied = true
			a.Summary = "brought the loopback device lo up"
			return a, nil
		}}
}

func sysSetLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring %s up: socket: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: set flags: %w", name, err)
	}
	return nil
}

// sysDevRoot is the /dev that belongs with env's procfs: the dev directory
// beside ProcRoot ("/dev" for "/proc"), so a fixture or a prepared root
// carries its own.
func sysDevRoot(env *Env) string {
	return filepath.Join(filepath.Dir(filepath.Clean(procRootDir(env))), "dev")
}

// sysDevpts is what checkDevpts and the fixer look at.
type sysDevpts struct {
	pts, ptmx string
	mounted   *procMount
	others    []string
	openErr   error
}

func sysProbeDevpts(env *Env) (sysDevpts, error) {
	dev := sysDevRoot(env)
	s := sysDevpts{pts: filepath.Join(dev, "pts"), ptmx: filepath.Join(dev, "ptmx")}
	data, err := os.ReadFile(filepath.Join(procRootDir(env), "self", "mountinfo"))
	if err != nil {
		return s, err
	}
	mounts, err := procParseMountInfo(data)
	if err != nil {
		return s, err
	}
	for i, m := range mounts {
		if m.FSType != "devpts" {
			continue
		}
		if m.MountPoint == s.pts {
			s.mounted = &mounts[i]
		} else {
			s.others = append(s.others, m.MountPoint)
		}
	}
	// Opening the multiplexer is what criu check's check_tty does; it
	// allocates a pty that closes with the descriptor.
	f, err := os.OpenFile(s.ptmx, os.O_RDWR|unix.O_NOCTTY, 0)
	if err == nil {
		f.Close()
	}
	s.openErr = err
	return s, nil
}

func checkDevpts(_ context.Context, env *Env) []reports.Finding {
	s, err := sysProbeDevpts(env)
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read the mount table", Reason: err.Error()}}
	}
	var ev []string
	if s.mounted != nil {
		ev = append(ev, fmt.Sprintf("devpts on %s (%s)", s.pts, s.mounted.SuperOpts))
	} else {
		ev = append(ev, "no devpts mounted on "+s.pts)
	}
	if len(s.others) > 0 {
		ev = append(ev, "devpts also on "+strings.Join(s.others, ", "))
	}
	if s.openErr != nil {
		ev = append(ev, fmt.Sprintf("open %s: %v", s.ptmx, sysUnwrapPath(s.openErr)))
	} else {
		ev = append(ev, "open "+s.ptmx+": ok")
	}
	fix := &reports.Fix{
		Description: fmt.Sprintf("mount devpts on %s (mount -t devpts -o newinstance,ptmxmode=0666 devpts %s) and make %s point at %s/ptmx",
			s.pts, s.pts, s.ptmx, s.pts),
		AutoFixable: true, Fixer: FixerIDMountDevpts}
	switch {
	case s.mounted != nil && s.openErr == nil:
		return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "devpts is mounted and /dev/ptmx opens"}}
	case s.openErr != nil:
		return []reports.Finding{{Status: reports.Fail, Evidence: ev, Fix: fix,
			Summary: "cannot open /dev/ptmx: criu check fails (Can't open /dev/ptmx) and terminals cannot be dumped"}}
	default:
		return []reports.Finding{{Status: reports.Warn, Evidence: ev, Fix: fix,
			Summary: "/dev/ptmx opens but no devpts is mounted on /dev/pts: ptys of the workload cannot be dumped"}}
	}
}

func sysUnwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// DevptsFixer mounts a devpts instance on /dev/pts (newinstance,
// ptmxmode=0666, so the instance's own ptmx is usable) and, when /dev/ptmx
// still does not open, points it at /dev/pts/ptmx: a symlink when it is
// missing, a bind mount over a node that does not work.
func DevptsFixer() Fixer {
	return Fixer{ID: FixerIDMountDevpts, Title: "mount devpts and make /dev/ptmx usable",
		Apply: func(_ context.Context, env *Env, _ reports.Finding) (reports.Action, error) {
			a := reports.Action{Summary: "mount devpts"}
			s, err := sysProbeDevpts(env)
			if err != nil {
				return a, fmt.Errorf("mount devpts: %w", err)
			}
			var did []string
			if s.mounted == nil {
				if err := os.MkdirAll(s.pts, 0o755); err != nil {
					return a, fmt.Errorf("mount devpts: %w", err)
				}
				if err := unix.Mount("devpts", s.pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC,
					"newinstance,ptmxmode=0666,mode=0620"); err != nil {
					return a, fmt.Errorf("mount devpts on %s: %w", s.pts, err)
				}
				did = append(did, "mounted devpts on "+s.pts+" (newinstance,ptmxmode=0666)")
				if s, err = sysProbeDevpts(env); err != nil {
					return a, fmt.Errorf("mount devpts: %w", err)
				}
			}
			if s.openErr != nil {
				target := filepath.Join(s.pts, "ptmx")
				if _, err := os.Lstat(s.ptmx); errors.Is(err, fs.ErrNotExist) {
					if err := os.Symlink("pts/ptmx", s.ptmx); err != nil {
						return a, fmt.Errorf("link %s to pts/ptmx: %w", s.ptmx, err)
					}
					did = append(did, "linked "+s.ptmx+" to pts/ptmx")
				} else {
					if err := unix.Mount(target, s.ptmx, "", unix.MS_BIND, ""); err != nil {
						return a, fmt.Errorf("bind %s onto %s: %w", target, s.ptmx, err)
					}
					did = append(did, "bind-mounted "+target+" onto "+s.ptmx)
				}
				if s, err = sysProbeDevpts(env); err != nil {
					return a, fmt.Errorf("mount devpts: %w", err)
				}
				if s.openErr != nil {
					a.Summary = strings.Join(did, "; ")
					return a, fmt.Errorf("%s still does not open: %w", s.ptmx, sysUnwrapPath(s.openErr))
				}
			}
			if len(did) == 0 {
				did = append(did, "nothing to do: devpts is mounted and "+s.ptmx+" opens")
			}
			a.Applied = true
			a.Summary = strings.Join(did, "; ")
			return a, nil
		}}
}

func checkNsLastPid(_ context.Context, env *Env) []reports.Finding {
	path := filepath.Join(procRootDir(env), "sys", "kernel", "ns_last_pid")
	v, err := sysReadTrim(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []reports.Finding{{Status: reports.Fail, Evidence: []string{path + ": does not exist"},
			Summary: "no ns_last_pid: the kernel lacks CONFIG_CHECKPOINT_RESTORE, criu check fails",
			Fix:     &reports.Fix{Description: "use a kernel built with CONFIG_CHECKPOINT_RESTORE=y (kata-cr kernel check --emit-fragment)"}}}
	}
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read ns_last_pid", Reason: err.Error()}}
	}
	ev := []string{fmt.Sprintf("%s: %s", path, v)}
	if err := unix.Access(path, unix.W_OK); err != nil {
		if !env.Root {
			return []reports.Finding{{Status: reports.Skip, Evidence: ev,
				Reason: "needs root: ns_last_pid is writable only by root"}}
		}
		return []reports.Finding{{Status: reports.Fail, Evidence: append(ev, "access W_OK: "+err.Error()),
			Summary: "ns_last_pid is not writable: /proc/sys is read-only here, criu cannot restore PIDs",
			Fix:     &reports.Fix{Description: "run kata-cr where /proc/sys is writable (not in a container that mounts it read-only)"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev, Summary: "ns_last_pid exists and is writable"}}
}

// sysLookTool finds a helper the way criu's execvp of it will: on PATH,
// which criu inherits from kata-cr.
func sysLookTool(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	return p
}

// sysNftables says whether the kernel has nf_tables, and how we know.
func sysNftables(env *Env) (bool, string) {
	if _, err := os.Stat(filepath.Join(env.SysRoot, "module", "nf_tables")); err == nil {
		return true, "nf_tables module is loaded"
	}
	if env.Config == nil {
		return false, "nf_tables is not loaded (no kernel config to tell whether it is built in)"
	}
	switch env.Config.State("NF_TABLES") {
	case kernel.Enabled:
		return true, "CONFIG_NF_TABLES=y in " + env.Config.Source
	case kernel.Module:
		return false, "CONFIG_NF_TABLES=m but the module is not loaded (modprobe nf_tables)"
	default:
		return false, "CONFIG_NF_TABLES is not set in " + env.Config.Source
	}
}

// checkNetworkLock finds the backend criu will lock the network with.
// Debian's criu defaults to iptables (NETWORK_LOCK_DEFAULT): it runs
// iptables-restore when it dumps a network namespace or established TCP
// connections; --network-lock nftables uses nf_tables through libnftables.
// The option itself is planned by process.tcp, for a tree that holds TCP
// connections, after asking CRIU (planNetLock).
func checkNetworkLock(_ context.Context, env *Env) []reports.Finding {
	ipt := sysLookTool("iptables-restore")
	nft, nftWhy := sysNftables(env)
	ev := []string{"kernel: " + nftWhy}
	if ipt != "" {
		ev = append([]string{"iptables-restore: " + ipt}, ev...)
		return []reports.Finding{{Status: reports.Pass, Evidence: ev,
			Summary: "criu can lock the network with iptables (its default)"}}
	}
	ev = append([]string{"iptables-restore: not found on PATH"}, ev...)
	if nft {
		return []reports.Finding{{Status: reports.Warn, Evidence: ev,
			Summary: "no iptables-restore for criu's default network lock; the kernel has nf_tables",
			Fix:     &reports.Fix{Description: "pass --network-lock nftables to criu (needs a criu built with nftables: see criu.feature.network_lock_nftables; kata-cr checkpoint does it for a tree with TCP connections), or install iptables (apt-get install iptables)"}}}
	}
	return []reports.Finding{{Status: reports.Fail, Evidence: ev,
		Summary: "no network lock backend: dumping established TCP connections or a network namespace will fail",
		Fix:     &reports.Fix{Description: "install iptables (apt-get install iptables), or load nf_tables and pass --network-lock nftables"}}}
}

// checkTar: criu saves tmpfs mounts of the dumped tree by running tar with
// GNU options; busybox tar fails with "Can't dump tmpfs content".
func checkTar(ctx context.Context, _ *Env) []reports.Finding {
	fix := &reports.Fix{Description: "install GNU tar (apt-get install tar) where criu runs"}
	p, gnu, ev := sysGNUTar(ctx)
	switch {
	case p == "":
		return []reports.Finding{{Status: reports.Warn, Fix: fix, Evidence: []string{ev},
			Summary: "no tar: criu cannot dump tmpfs mounts (/dev, /dev/shm of a container)"}}
	case gnu:
		return []reports.Finding{{Status: reports.Pass, Evidence: []string{ev}, Summary: "GNU tar is available for tmpfs dumps"}}
	}
	return []reports.Finding{{Status: reports.Warn, Fix: fix, Evidence: []string{ev},
		Summary: "tar is not GNU tar: criu fails to dump tmpfs mounts (Can't dump tmpfs content)"}}
}

// sysGNUTar finds the tar criu will run (the first on PATH, which criu
// inherits from kata-cr) and reports whether it is GNU tar, with an
// evidence line; path is "" when there is no tar.
func sysGNUTar(ctx context.Context) (path string, gnu bool, ev string) {
	p := sysLookTool("tar")
	if p == "" {
		return "", false, "tar: not found on PATH"
	}
	if real, err := filepath.EvalSymlinks(p); err == nil && filepath.Base(real) == "busybox" {
		return p, false, fmt.Sprintf("tar: %s is busybox", p)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "--version").CombinedOutput()
	first := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	if err != nil {
		return p, false, fmt.Sprintf("%s --version: %v %s", p, err, first)
	}
	return p, strings.Contains(first, "GNU tar"), fmt.Sprintf("%s --version: %s", p, first)
}

func checkPidMax(_ context.Context, env *Env) []reports.Finding {
	path := filepath.Join(procRootDir(env), "sys", "kernel", "pid_max")
	v, err := sysReadTrim(path)
	if err != nil {
		return []reports.Finding{{Status: reports.Skip, Reason: fmt.Sprintf("read %s: %v", path, sysUnwrapPath(err))}}
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return []reports.Finding{{Status: reports.Error, Summary: "cannot read pid_max",
			Reason: fmt.Sprintf("%s: %q is not a number", path, v)}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: []string{fmt.Sprintf("%s: %d", path, n)},
		Summary: fmt.Sprintf("pid_max is %d: a restore needs the dumped PIDs free and below the target's pid_max", n)}}
}
