package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSyscall(t *testing.T) {
	tests := []struct {
		name, data string
		want       Syscall
		err        string
	}{
		{"running", "running\n", Syscall{Running: true, Nr: -1}, ""},
		{"blocked outside a call", "-1 0x7ffd3b1c8f18 0x7f7e2f2d1a2e\n", Syscall{Nr: -1}, ""},
		// A task waiting for its vfork child: clone(CLONE_VM|CLONE_VFORK|SIGCHLD).
		{"clone", "56 0x4111 0x0 0x0 0x0 0x0 0x0 0x7ffd3b1c8f18 0x4a3b2e\n", Syscall{Nr: 56, Args: [6]uint64{0x4111}}, ""},
		{"empty", "", Syscall{}, "empty"},
		{"short", "56 0x4111", Syscall{}, "6 arguments"},
		{"bad number", "x 0x0", Syscall{}, "parse syscall file"},
		{"bad argument", "56 0xzz 0x0 0x0 0x0 0x0 0x0 0x0 0x0", Syscall{}, "argument 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSyscall([]byte(tt.data))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("ParseSyscall(%q) = %+v, %v; want error %q", tt.data, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseSyscall(%q) = %+v, %v; want %+v", tt.data, got, err, tt.want)
			}
		})
	}
}

func TestParseStatState(t *testing.T) {
	for _, tt := range []struct{ data, want, err string }{
		{"123 (sh) S 1 123 123 0 -1", "S", ""},
		{"124 (a) b) D 1 2", "D", ""},
		{"125 (x", "", "no command name"},
		{"126 (x) ", "", "no state"},
	} {
		got, err := ParseStatState([]byte(tt.data))
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseStatState(%q) = %q, %v; want %q, %q", tt.data, got, err, tt.want, tt.err)
		}
	}
}

func TestReadTaskSyscallAndWchan(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "7", "task", "8")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"syscall": "56 0x4111 0x0 0x0 0x0 0x0 0x0 0x1 0x2\n", "wchan": "wait_for_vfork_done", "stat": "8 (vfork-hold) D 7 7"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs := New(root)
	if s, err := fs.ReadTaskSyscall(7, 8); err != nil || s.Nr != 56 || s.Args[0] != 0x4111 {
		t.Errorf("ReadTaskSyscall = %+v, %v", s, err)
	}
	if w, err := fs.ReadTaskWchan(7, 8); err != nil || w != "wait_for_vfork_done" {
		t.Errorf("ReadTaskWchan = %q, %v", w, err)
	}
	if st, err := fs.ReadTaskState(7, 8); err != nil || st != "D" {
		t.Errorf("ReadTaskState = %q, %v", st, err)
	}
	if _, err := fs.ReadTaskSyscall(7, 9); !Gone(err) {
		t.Errorf("ReadTaskSyscall of a missing task = %v, want a gone error", err)
	}
}
