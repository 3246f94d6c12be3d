package container

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSharedNamespaces: the sandbox's IPC and UTS namespaces are new ones,
// the caller's thread stays in its own, and a command started joined to
// them is born in them.
func TestSharedNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces")
	}
	dir := t.TempDir()
	s, err := CreateSharedNamespaces(filepath.Join(dir, "ns"), "pod-test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ReleaseSharedNamespaces(s) }()
	ownIPC, _ := os.Readlink("/proc/thread-self/ns/ipc")
	for _, tc := range []struct{ ns, file string }{{"ipc", s.IPC}, {"uts", s.UTS}} {
		cmd := exec.Command("/bin/sh", "-c", "readlink /proc/self/ns/"+tc.ns+"; hostname")
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := startJoined(cmd, s.Join()); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		shared, own := inode(t, tc.file), inode(t, "/proc/thread-self/ns/"+tc.ns)
		if shared == own {
			t.Errorf("%s: the shared namespace is the caller's", tc.ns)
		}
		if want := fmt.Sprintf("%s:[%d]\npod-test\n", tc.ns, shared); out.String() != want {
			t.Errorf("%s: the joined command printed %q, want %q", tc.ns, out.String(), want)
		}
	}
	if now, _ := os.Readlink("/proc/thread-self/ns/ipc"); now != ownIPC {
		t.Errorf("the caller's ipc namespace changed: %s, was %s", now, ownIPC)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
