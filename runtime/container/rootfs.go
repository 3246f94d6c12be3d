package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/ldd"

	"github.com/kata-cr/kata-cr/internal/filecopy"
)

// BusyboxPath is the rootfs path busybox is copied to; every applet is a
// symlink to it.
const BusyboxPath = "/bin/busybox"

// SandboxHostsMarker is on a line of the sandbox's hosts file that no
// rootfs has, so that a check can tell the sandbox's file from the empty
// mount point underneath it.
const SandboxHostsMarker = "kata-cr-sandbox"

// rootfsDirs are created in every rootfs, with their modes.
var rootfsDirs = []struct {
	path string
	mode os.FileMode
}{
	{"bin", 0o755}, {"sbin", 0o755}, {"usr/bin", 0o755}, {"usr/sbin", 0o755},
	{"etc", 0o755}, {"dev", 0o755}, {"proc", 0o555}, {"sys", 0o555}, {"root", 0o700},
	{"run", 0o755}, {"run/lock", os.ModeSticky | 0o777}, {"tmp", os.ModeSticky | 0o777}, {"var", 0o755},
	{"var/log", 0o755}, {"var/lib", 0o755},
}

// rootfsFiles are written into every rootfs. The three sandbox files are
// empty mount points: the sandbox's files are bind-mounted onto them.
var rootfsFiles = []struct {
	path    string
	content string
	mode    os.FileMode
}{
	{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644},
	{"etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644},
	{"etc/hosts", "", 0o644},
	{"etc/hostname", "", 0o644},
	{"etc/resolv.conf", "", 0o644},
}

// PrepareRootfs fills dir with a minimal container rootfs: busybox and a
// symlink for each of its applets, the files a container expects in /etc,
// and files, which maps a path in the container to the path of a file on
// this machine. Each executable or library among files comes with the
// shared libraries it needs, at the same paths as on this machine.
// Busybox is files[BusyboxPath] when given, else the busybox in PATH.
func PrepareRootfs(dir string, files map[string]string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("prepare rootfs %q: must be an absolute path", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	for _, d := range rootfsDirs {
		p := filepath.Join(dir, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	for _, f := range rootfsFiles {
		if err := writeFile(filepath.Join(dir, f.path), []byte(f.content), f.mode); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}

	all := make(map[string]string, len(files)+1)
	for k, v := range files {
		all[k] = v
	}
	if _, ok := all[BusyboxPath]; !ok {
		bb, err := exec.LookPath("busybox")
		if err != nil {
			return fmt.Errorf("prepare rootfs: busybox not found in PATH: install busybox-static")
		}
		all[BusyboxPath] = bb
	}
	dests := make([]string, 0, len(all))
	var sources []string
	for dest, src := range all {
		if !filepath.IsAbs(dest) {
			return fmt.Errorf("prepare rootfs: container path %q: must be absolute", dest)
		}
		dests = append(dests, dest)
		sources = append(sources, src)
	}
	sort.Strings(dests)
	for _, dest := range dests {
		if err := copyInto(dir, dest, all[dest]); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	libs, err := ldd.FList(sources...)
	if err != nil {
		return fmt.Errorf("prepare rootfs: list shared libraries: %w", err)
	}
	sort.Strings(libs)
	for _, lib := range libs {
		if err := copyPreservingLink(dir, lib); err != nil {
			return fmt.Errorf("prepare rootfs: %w", err)
		}
	}
	if err := linkApplets(dir, all[BusyboxPath]); err != nil {
		return fmt.Errorf("prepare rootfs: %w", err)
	}
	return nil
}

// linkApplets creates a symlink to busybox for each applet busybox lists,
// leaving alone any path that already holds a real program.
func linkApplets(dir, busybox string) error {
	var out bytes.Buffer
	cmd := exec.Command(busybox, "--list-full")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("list busybox applets with %s --list-full: %w", busybox, err)
	}
	for _, rel := range strings.Fields(out.String()) {
		p := filepath.Join(dir, filepath.Clean("/"+rel))
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(BusyboxPath, p); err != nil {
			return fmt.Errorf("link applet %s: %w", rel, err)
		}
	}
	return nil
}

// copyInto copies the file src (following symlinks) to the container path
// dest under root, keeping its permission bits.
func copyInto(root, dest, src string) error {
	p := filepath.Join(root, filepath.Clean(dest))
	// Replace, not overwrite: dest may be a symlink left by an earlier run.
	if err := filecopy.Copy(src, p, filecopy.Options{Atomic: true, MakeParents: true}); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dest, err)
	}
	return nil
}

// copyPreservingLink copies path into root at the same path, as a symlink
// when it is one (ldd lists the links a loader follows, and their targets).
func copyPreservingLink(root, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("copy %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return copyInto(root, path, path)
	}
	target, err := os.Readlink(path)
	if err != nil {
		return fmt.Errorf("copy %s: %w", path, err)
	}
	p := filepath.Join(root, filepath.Clean(path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("copy %s: %w", path, err)
	}
	_ = os.Remove(p)
	if err := os.Symlink(target, p); err != nil {
		return fmt.Errorf("copy %s: %w", path, err)
	}
	return nil
}

func writeFile(p string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// PrepareSandbox writes the sandbox's hosts, hostname and resolv.conf into
// dir, the way the Kata agent keeps them for a pod, and returns their
// paths. The hosts file has a line with SandboxHostsMarker.
func PrepareSandbox(dir, hostname string) (SandboxFiles, error) {
	if hostname == "" {
		hostname = SandboxHostsMarker
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return SandboxFiles{}, fmt.Errorf("prepare sandbox: %w", err)
	}
	sb := SandboxFiles{
		Hosts:      filepath.Join(dir, "hosts"),
		Hostname:   filepath.Join(dir, "hostname"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"10.88.0.2\t" + hostname + "\t" + SandboxHostsMarker + ".pod.local\n"
	for _, f := range []struct{ path, content string }{
		{sb.Hosts, hosts},
		{sb.Hostname, hostname + "\n"},
		{sb.ResolvConf, "nameserver 10.88.0.1\nsearch pod.local\n"},
	} {
		if err := writeFile(f.path, []byte(f.content), 0o644); err != nil {
			return SandboxFiles{}, fmt.Errorf("prepare sandbox: %w", err)
		}
	}
	return sb, nil
}

// CheckSandboxFiles reports whether the container whose init is pid (in
// the caller's view) sees each of the sandbox's files at its mount point,
// reading them through procRoot/PID/root. It proves that a restored
// container got its bind mounts back rather than the empty files under
// them.
func CheckSandboxFiles(procRoot string, pid int, sb SandboxFiles) error {
	var errs []error
	for _, b := range sb.Binds() {
		if b.Dir {
			// A pod's volume: its files are the workloads' own.
			continue
		}
		want, err := os.ReadFile(b.Source)
		if err != nil {
			errs = append(errs, fmt.Errorf("read sandbox file: %w", err))
			continue
		}
		p := filepath.Join(procRoot, fmt.Sprint(pid), "root", b.Target)
		got, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read the container's %s: %w", b.Target, err))
			continue
		}
		if !bytes.Equal(got, want) {
			errs = append(errs, fmt.Errorf("the container's %s has %d bytes, not the sandbox's %s (%d bytes): the bind mount is lost", b.Target, len(got), b.Source, len(want)))
		}
	}
	return errors.Join(errs...)
}
