package criu

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/crit"
	criucore "github.com/checkpoint-restore/go-criu/v7/crit/images/criu-core"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v7/crit/images/stats"
	"google.golang.org/protobuf/proto"
)

// encodeImage writes an image file with crit's encoder: the parsing tests'
// fixtures, since this host's CRIU cannot dump.
func encodeImage(t *testing.T, path, magic string, msgs ...proto.Message) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img := &crit.CriuImage{Magic: magic}
	for _, m := range msgs {
		img.Entries = append(img.Entries, &crit.CriuEntry{Message: m})
	}
	if err := crit.New(nil, f, "", false, false).Encode(img); err != nil {
		t.Fatalf("encode %s: %v", path, err)
	}
}

func pstreeEntry(pid, ppid, pgid, sid uint32, threads ...uint32) *pstree.PstreeEntry {
	return &pstree.PstreeEntry{Pid: proto.Uint32(pid), Ppid: proto.Uint32(ppid), Pgid: proto.Uint32(pgid), Sid: proto.Uint32(sid), Threads: threads}
}

func coreEntry(comm string) *criucore.CoreEntry {
	mt := criucore.CoreEntry_X86_64
	return &criucore.CoreEntry{Mtype: &mt, Tc: &criucore.TaskCoreEntry{
		TaskState: proto.Uint32(1), ExitCode: proto.Uint32(0), Personality: proto.Uint32(0),
		Flags: proto.Uint32(0), BlkSigset: proto.Uint64(0), Comm: proto.String(comm),
	}}
}

func TestReadPstree(t *testing.T) {
	dir := t.TempDir()
	encodeImage(t, filepath.Join(dir, "pstree.img"), "PSTREE",
		pstreeEntry(1, 0, 1, 1, 1),
		pstreeEntry(7, 1, 1, 1, 7, 8),
	)
	encodeImage(t, filepath.Join(dir, "core-1.img"), "CORE", coreEntry("sh"))
	encodeImage(t, filepath.Join(dir, "core-7.img"), "CORE", coreEntry("redis-server"))
	got, err := ReadPstree(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Process{
		{PID: 1, PPID: 0, PGID: 1, SID: 1, Threads: []int{1}, Comm: "sh"},
		{PID: 7, PPID: 1, PGID: 1, SID: 1, Threads: []int{7, 8}, Comm: "redis-server"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadPstree = %+v, want %+v", got, want)
	}
	// A second directory in the same process gets its own answer (crit's
	// explorer would not).
	dir2 := t.TempDir()
	encodeImage(t, filepath.Join(dir2, "pstree.img"), "PSTREE", pstreeEntry(1, 0, 0, 0, 1))
	encodeImage(t, filepath.Join(dir2, "core-1.img"), "CORE", coreEntry("sleep"))
	got2, err := ReadPstree(dir2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got2) != 1 || got2[0].Comm != "sleep" || got2[0].SID != 0 {
		t.Errorf("second directory: %+v", got2)
	}
	if _, err := ReadPstree(t.TempDir()); err == nil {
		t.Error("ReadPstree of an empty directory succeeded")
	}
}

func TestReadDumpStats(t *testing.T) {
	dir := t.TempDir()
	encodeImage(t, filepath.Join(dir, "stats-dump"), "STATS", &stats.StatsEntry{Dump: &stats.DumpStatsEntry{
		FreezingTime: proto.Uint32(1500), FrozenTime: proto.Uint32(250000), MemdumpTime: proto.Uint32(1000),
		MemwriteTime: proto.Uint32(2000), PagesScanned: proto.Uint64(300), PagesSkippedParent: proto.Uint64(0),
		PagesWritten: proto.Uint64(120), PagesLazy: proto.Uint64(0),
	}})
	s, err := ReadDumpStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := DumpStats{FreezingTime: 1500 * time.Microsecond, FrozenTime: 250 * time.Millisecond, MemdumpTime: time.Millisecond,
		MemwriteTime: 2 * time.Millisecond, PagesScanned: 300, PagesWritten: 120}
	if *s != want {
		t.Errorf("ReadDumpStats = %+v, want %+v", *s, want)
	}
}

// startTree starts `sh` with two sleeping children in a new pid namespace
// and waits until both children exist.
func startTree(t *testing.T, setsid bool) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("a new pid namespace needs root: run the tests as root")
	}
	cmd := exec.Command("sh", "-c", "sleep 300 & sleep 300 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: setsid}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		tree, err := LiveTree("/proc", cmd.Process.Pid)
		// The children are "sh" until they have exec'd sleep.
		if err == nil && len(tree) == 3 && tree[1].Comm == "sleep" && tree[2].Comm == "sleep" {
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the tree did not get its two children")
	return nil
}

func TestLiveTree(t *testing.T) {
	tests := []struct {
		setsid  bool
		wantSID int
	}{
		{false, 0}, // the session is outside the pid namespace
		{true, 1},
	}
	for _, tt := range tests {
		cmd := startTree(t, tt.setsid)
		tree, err := LiveTree("/proc", cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if tree[0].PID != 1 || tree[0].PPID != 0 || tree[0].SID != tt.wantSID || !reflect.DeepEqual(tree[0].Threads, []int{1}) {
			t.Errorf("setsid=%v: root %+v", tt.setsid, tree[0])
		}
		for _, c := range tree[1:] {
			if c.PPID != 1 || c.SID != tt.wantSID || c.Comm != "sleep" || c.PID < 2 {
				t.Errorf("setsid=%v: child %+v", tt.setsid, c)
			}
		}
	}
}

func TestCompareTrees(t *testing.T) {
	live := []Process{
		{PID: 1, SID: 1, PGID: 1, Threads: []int{1}, Comm: "sh"},
		{PID: 2, PPID: 1, SID: 1, PGID: 1, Threads: []int{2}, Comm: "sleep"},
	}
	same := []Process{
		{PID: 1, SID: 1, PGID: 1, Threads: []int{1}},
		{PID: 2, PPID: 1, SID: 1, PGID: 1, Threads: []int{2}},
	}
	if err := CompareTrees(same, live); err != nil {
		t.Errorf("equal trees: %v", err)
	}
	tests := []struct {
		name   string
		dumped []Process
		want   string
	}{
		{"missing", same[:1], "pid 2 (sleep) is missing from the images"},
		{"extra", append(append([]Process(nil), same...), Process{PID: 3, PPID: 1, Comm: "x"}), "pid 3 (x) is in the images but not in the live tree"},
		{"session", []Process{same[0], {PID: 2, PPID: 1, SID: 0, PGID: 1, Threads: []int{2}}}, "pid 2: images have ppid 1 pgid 1 sid 0, live 1 1 1"},
		{"threads", []Process{same[0], {PID: 2, PPID: 1, SID: 1, PGID: 1, Threads: []int{2, 3}}}, "pid 2: images have threads [2 3], live [2]"},
		{"zombie dumped alive", []Process{same[0], {PID: 2, PPID: 1, SID: 1, PGID: 1, Threads: []int{2}}}, "pid 2: images have it alive, live a zombie"},
		{"alive dumped as a zombie", []Process{same[0], {PID: 2, PPID: 1, SID: 1, PGID: 1, Zombie: true}}, "pid 2: images have it a zombie, live alive"},
	}
	zombie := []Process{live[0], {PID: 2, PPID: 1, SID: 1, PGID: 1, Threads: []int{2}, Comm: "exit", Zombie: true}}
	// CRIU records a zombie without threads.
	if err := CompareTrees([]Process{same[0], {PID: 2, PPID: 1, SID: 1, PGID: 1, Zombie: true}}, zombie); err != nil {
		t.Errorf("a zombie as CRIU records it: %v", err)
	}
	for _, tt := range tests {
		l := live
		if strings.Contains(tt.name, "zombie dumped") {
			l = zombie
		}
		err := CompareTrees(tt.dumped, l)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: CompareTrees = %v, want %q", tt.name, err, tt.want)
		}
	}
}
