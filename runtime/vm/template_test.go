package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTemplateKey: the key follows what a clone must share with its
// template (the machine, the devices, the kernel's and the image's
// content) and ignores what differs from run to run (the shared
// directories' paths, the image's time).
func TestTemplateKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	qemu := write("qemu", "qemu")
	kernel, initrd := write("vmlinuz", "kernel"), write("image.cpio", "image")
	base := BootSpec{Kernel: kernel, Initrd: initrd, MemoryMB: 1024, CPUs: 1, Accel: Accel{Name: AccelTCG},
		Shares: []Share{{Tag: "kata-cr.rootfs", Path: "/a", ReadOnly: true}}}
	key := func(s BootSpec) string {
		t.Helper()
		k, err := templateKey(qemu, s)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	want := key(base)
	same := []struct {
		name string
		edit func(*BootSpec)
	}{
		{"another share path", func(s *BootSpec) { s.Shares = []Share{{Tag: "kata-cr.rootfs", Path: "/b", ReadOnly: true}} }},
		{"another temp dir and log", func(s *BootSpec) { s.TempDir, s.ConsoleLog = "/x", "/x/console" }},
		{"the image touched", func(s *BootSpec) {
			later := time.Now().Add(time.Hour)
			if err := os.Chtimes(initrd, later, later); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range same {
		s := base
		tt.edit(&s)
		if got := key(s); got != want {
			t.Errorf("%s: key %s, want the same as %s", tt.name, got, want)
		}
	}
	other := []struct {
		name string
		edit func(*BootSpec)
	}{
		{"more memory", func(s *BootSpec) { s.MemoryMB = 2048 }},
		{"two vCPUs", func(s *BootSpec) { s.CPUs = 2 }},
		{"KVM", func(s *BootSpec) { s.Accel = Accel{Name: AccelKVM} }},
		{"another share tag", func(s *BootSpec) { s.Shares = []Share{{Tag: "kata-cr.rootfs.1", Path: "/a", ReadOnly: true}} }},
		{"a writable share", func(s *BootSpec) { s.Shares = []Share{{Tag: "kata-cr.rootfs", Path: "/a"}} }},
		{"no share", func(s *BootSpec) { s.Shares = nil }},
		{"a kernel argument", func(s *BootSpec) { s.Cmdline = []string{"debug"} }},
		{"another image", func(s *BootSpec) { s.Initrd = write("image2.cpio", "image 2") }},
		{"another kernel", func(s *BootSpec) { s.Kernel = write("vmlinuz2", "kernel 2") }},
	}
	seen := map[string]string{want: "base"}
	for _, tt := range other {
		s := base
		tt.edit(&s)
		got := key(s)
		if prev, ok := seen[got]; ok {
			t.Errorf("%s: key %s, the same as %s's", tt.name, got, prev)
		}
		seen[got] = tt.name
	}
	if _, err := templateKey(qemu, BootSpec{Kernel: filepath.Join(dir, "missing"), Initrd: initrd}); err == nil {
		t.Error("a missing kernel gave a key")
	}
}

// TestPruneTemplates: the templates used last stay, the others go, and so
// do partial files older than a save can take; a fresh partial stays.
func TestPruneTemplates(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	files := []struct {
		name string
		age  time.Duration
	}{
		{"a.vmstate", 1 * time.Minute},
		{"b.vmstate", 2 * time.Minute},
		{"c.vmstate", 3 * time.Minute},
		{".partial-1.vmstate", time.Second},
		{".partial-2.vmstate", 2 * saveLimit},
		{"notes.txt", time.Hour},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		at := now.Add(-f.age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	pruneTemplates(dir, 2)
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".partial-1.vmstate", "a.vmstate", "b.vmstate", "notes.txt"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
}

// TestQMP: the client reads the greeting, negotiates, skips events that
// arrive before an answer, decodes return values and turns qemu's error
// answers into errors naming the command.
func TestQMP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var cmds []string
		defer func() { got <- cmds }()
		c.Write([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n"))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute string `json:"execute"`
			}
			_ = json.Unmarshal(line, &req)
			cmds = append(cmds, req.Execute)
			switch req.Execute {
			case "query-status":
				c.Write([]byte(`{"event": "RESUME", "timestamp": {}}` + "\n" + `{"return": {"status": "inmigrate", "running": false}}` + "\n"))
			case "migrate":
				c.Write([]byte(`{"error": {"class": "GenericError", "desc": "no fd named template"}}` + "\n"))
			default:
				c.Write([]byte(`{"return": {}}` + "\n"))
			}
		}
	}()
	q, err := dialQMP(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.status()
	if err != nil || st != "inmigrate" {
		t.Errorf("status %q %v, want inmigrate", st, err)
	}
	err = q.execute("migrate", map[string]any{"uri": "fd:template"}, nil)
	if err == nil || !strings.Contains(err.Error(), "qmp migrate: GenericError: no fd named template") {
		t.Errorf("migrate: %v, want qemu's error naming the command", err)
	}
	q.Close()
	if cmds := <-got; !slices.Equal(cmds, []string{"qmp_capabilities", "query-status", "migrate"}) {
		t.Errorf("commands %v", cmds)
	}
}
