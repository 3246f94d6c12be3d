package checks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

func TestProcGhostMeasure(t *testing.T) {
	const size, allocated = 8 << 20, 4096
	tests := []struct {
		v    criu.Version
		want int64
	}{
		{criu.Version{Major: 3, Minor: 17, Sublevel: 1}, size},
		{criu.Version{Major: 3, Minor: 18}, allocated},
		{criu.Version{Major: 4, Minor: 1, Sublevel: 1}, allocated},
		{criu.Version{}, size},
	}
	for _, tt := range tests {
		if got, how := procGhostMeasure(tt.v, size, allocated); got != tt.want || how == "" {
			t.Errorf("CRIU %s: a sparse file of %d bytes, %d allocated, measures %d (%s), want %d", tt.v, size, allocated, got, how, tt.want)
		}
	}
	// A file preallocated past its end occupies more than its size.
	if got, _ := procGhostMeasure(criu.Version{}, 10, 8192); got != 8192 {
		t.Errorf("unknown version: %d, want the larger", got)
	}
}

// procShmFile makes a file on a tmpfs (/dev/shm), where CRIU cannot find a
// watched inode again by handle.
func procShmFile(t *testing.T, name string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "kata-cr-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("watched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProcRemovedFilesLive hands a sleep an open file and an inotify
// watch on it, then removes the file's name: with no other link CRIU
// cannot find the watched file (process.inotify fails, the file is a
// ghost); with another link CRIU needs --link-remap for the open file
// (process.link-remap) and finds the watch through the link.
func TestProcRemovedFilesLive(t *testing.T) {
	procNeedRoot(t)
	sleep := procNeedTool(t, "sleep", "coreutils")
	for _, tc := range []struct {
		name                     string
		link                     bool
		inotify, remap, ghost    reports.Status
		remapOpts                criuopt.Set
		inotifySays, remapQuotes string
	}{
		{name: "no other link", inotify: reports.Fail, remap: reports.Pass, ghost: reports.Pass, inotifySays: "Can't find suitable path for handle"},
		// The watch leads to the other link.
		{name: "another link", link: true, inotify: reports.Warn, remap: reports.Fail, ghost: reports.Pass,
			remapOpts: criuopt.Set{LinkRemap: true}, inotifySays: "watches /dev/shm/", remapQuotes: "Use link-remap option"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := procShmFile(t, "watched")
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			ino := os.NewFile(uintptr(ifd), "inotify")
			t.Cleanup(func() { ino.Close() })
			if _, err := unix.InotifyAddWatch(ifd, p, unix.IN_MODIFY); err != nil {
				t.Fatal(err)
			}
			if tc.link {
				if err := os.Link(p, p+".link"); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			pid := procSleepWith(t, sleep, f, ino)
			fs := procRunAll(t, pid)
			in, rm, gh := procOne(t, fs, "process.inotify"), procOne(t, fs, "process.link-remap"), procOne(t, fs, "process.ghost-files")
			t.Logf("%s", procDump([]reports.Finding{in, rm, gh}))
			if in.Status != tc.inotify || rm.Status != tc.remap || gh.Status != tc.ghost {
				t.Fatalf("inotify %s, link-remap %s, ghost-files %s; want %s, %s, %s", in.Status, rm.Status, gh.Status, tc.inotify, tc.remap, tc.ghost)
			}
			if !strings.Contains(strings.Join(in.Evidence, "\n")+in.Summary, tc.inotifySays) {
				t.Errorf("process.inotify does not say %q", tc.inotifySays)
			}
			if tc.inotify == reports.Fail && (in.Level != reports.Required || !in.Blocking()) {
				t.Errorf("process.inotify fails at level %s: it must block the prediction", in.Level)
			}
			if tc.remap == reports.Fail && (rm.Fix == nil || !rm.Fix.CRIU.Equal(tc.remapOpts) || !rm.Fix.AutoFixable || !strings.Contains(rm.Summary, tc.remapQuotes)) {
				t.Errorf("process.link-remap: %q, fix %+v, want %q", rm.Summary, rm.Fix, tc.remapOpts.DumpArgs())
			}
		})
	}
}
