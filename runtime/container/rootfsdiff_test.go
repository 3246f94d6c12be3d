package container

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRootfsDiffSpecialFiles: FIFOs, device nodes and hard links a
// container makes in its files travel with the checkpoint and come back
// as they were; a socket file, which a tar cannot hold and CRIU binds
// again, is left out.
func TestRootfsDiffSpecialFiles(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("mknod needs root: run the tests as root")
	}
	rootfs := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755))
	must(os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644))
	base, err := TakeBaseline(rootfs)
	must(err)

	run := filepath.Join(rootfs, "run")
	must(os.Mkdir(run, 0o755))
	must(unix.Mkfifo(filepath.Join(run, "fifo"), 0o600))
	must(unix.Mknod(filepath.Join(run, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(os.WriteFile(filepath.Join(run, "data"), []byte("linked\n"), 0o644))
	must(os.Link(filepath.Join(run, "data"), filepath.Join(run, "data.link")))
	ln, err := net.Listen("unix", filepath.Join(run, "sock"))
	must(err)
	defer ln.Close()

	d, err := base.Diff(rootfs)
	must(err)
	want := []string{"run", "run/data", "run/data.link", "run/fifo", "run/null"}
	if !slices.Equal(d.Changed, want) {
		t.Fatalf("Changed = %q, want %q", d.Changed, want)
	}
	dir := t.TempDir()
	must(WriteRootfsDiff(dir, rootfs, d))

	fresh := t.TempDir()
	must(ApplyRootfsDiff(dir, fresh))
	var st, st2 unix.Stat_t
	must(unix.Lstat(filepath.Join(fresh, "run/fifo"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFIFO || st.Mode&0o777 != 0o600 {
		t.Errorf("run/fifo: mode %o, want a FIFO 0600", st.Mode)
	}
	must(unix.Lstat(filepath.Join(fresh, "run/null"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("run/null: mode %o rdev %#x, want the character device 1:3", st.Mode, st.Rdev)
	}
	must(unix.Lstat(filepath.Join(fresh, "run/data"), &st))
	must(unix.Lstat(filepath.Join(fresh, "run/data.link"), &st2))
	if st.Ino != st2.Ino || st.Nlink != 2 {
		t.Errorf("run/data and run/data.link: inodes %d and %d, %d links: want one file with two names", st.Ino, st2.Ino, st.Nlink)
	}
	if _, err := os.Lstat(filepath.Join(fresh, "run/sock")); !os.IsNotExist(err) {
		t.Errorf("run/sock came back: %v", err)
	}
}
