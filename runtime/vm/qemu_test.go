package vm

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// hasSeq reports whether args holds seq as consecutive elements.
func hasSeq(args []string, seq ...string) bool {
	for i := 0; i+len(seq) <= len(args); i++ {
		if slices.Equal(args[i:i+len(seq)], seq) {
			return true
		}
	}
	return false
}

func TestQEMUArgs(t *testing.T) {
	base := BootSpec{Kernel: "/k/vmlinuz", Initrd: "/k/guest.cpio", MemoryMB: 1024, CPUs: 1}
	tests := []struct {
		name   string
		spec   func(BootSpec) BootSpec
		want   [][]string
		absent []string
	}{
		{"tcg", func(s BootSpec) BootSpec { s.Accel = Accel{Name: AccelTCG}; return s },
			[][]string{
				{"-accel", "tcg"}, {"-cpu", "max"}, {"-m", "1024"}, {"-smp", "1"}, {"-no-reboot"},
				{"-kernel", "/k/vmlinuz"}, {"-initrd", "/k/guest.cpio"},
				{"-chardev", "file,id=con,path=/tmp/c.log"}, {"-serial", "chardev:con"}, {"-monitor", "none"},
				{"-device", "virtio-serial-pci,id=vser0"},
				{"-chardev", "socket,id=ctl,path=/tmp/ctl.sock"},
				{"-device", "virtserialport,bus=vser0.0,chardev=ctl,name=" + agentapi.ControlPort},
				{"-chardev", "socket,id=data,path=/tmp/data.sock"},
				{"-device", "virtserialport,bus=vser0.0,chardev=data,name=" + agentapi.DataPort},
			}, []string{"-enable-kvm"}},
		{"kvm uses the host cpu", func(s BootSpec) BootSpec { s.Accel = Accel{Name: AccelKVM}; return s },
			[][]string{{"-accel", "kvm"}, {"-cpu", "host"}}, nil},
		{"cpu override", func(s BootSpec) BootSpec { s.Accel = Accel{Name: AccelKVM}; s.CPU = "qemu64"; return s },
			[][]string{{"-cpu", "qemu64"}}, nil},
		{"interactive console on stdio, still logged", func(s BootSpec) BootSpec { s.Interactive = true; return s },
			[][]string{{"-chardev", "stdio,id=con,mux=on,signal=off,logfile=/tmp/c.log"}, {"-mon", "chardev=con,mode=readline"}},
			[]string{"-monitor"}},
		{"a read-only 9p share, with a comma in its path", func(s BootSpec) BootSpec {
			s.Shares = []Share{{Tag: "kata-cr.rootfs", Path: "/b/root,fs", ReadOnly: true}}
			return s
		}, [][]string{
			{"-fsdev", "local,id=fs0,path=/b/root,,fs,security_model=none,multidevs=remap,readonly=on"},
			{"-device", "virtio-9p-pci,fsdev=fs0,mount_tag=kata-cr.rootfs"},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := qemuArgs(withDefaults(tt.spec(base)), "/tmp/c.log", "/tmp/ctl.sock", "/tmp/data.sock")
			for _, w := range tt.want {
				if !hasSeq(args, w...) {
					t.Errorf("args lack %q:\n%s", w, strings.Join(args, " "))
				}
			}
			for _, a := range tt.absent {
				if slices.Contains(args, a) {
					t.Errorf("args hold %q:\n%s", a, strings.Join(args, " "))
				}
			}
			i := slices.Index(args, "-append")
			if i < 0 {
				t.Fatalf("no -append")
			}
			cmdline := strings.Fields(args[i+1])
			for _, w := range []string{agentapi.GuestMarker, "console=ttyS0", "panic=-1"} {
				if !slices.Contains(cmdline, w) {
					t.Errorf("kernel command line %q lacks %s", args[i+1], w)
				}
			}
		})
	}
}

func TestTailLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	var b strings.Builder
	b.WriteString("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16)\r\n")
	for i := 0; i < 30; i++ {
		b.WriteString("line " + string(rune('a'+i%26)) + "\r\n")
	}
	b.WriteString("\n\n[    2.1] Kernel panic - not syncing: No working init found.\r\n")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := tailLines(p, 5)
	want := []string{"line a", "line b", "line c", "line d", "[    2.1] Kernel panic - not syncing: No working init found."}
	if !slices.Equal(got, want) {
		t.Errorf("tail %q, want %q", got, want)
	}
	if all := tailLines(p, 100); all[0] != "SeaBIOS (version 1.16)" {
		t.Errorf("escapes not stripped: %q", all[0])
	}
	if got := tailLines(filepath.Join(t.TempDir(), "none"), 5); got != nil {
		t.Errorf("missing file: %q", got)
	}
}

func TestQEMUMessage(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]\nqemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.\n",
			"error: failed to set MSR 0x10a to 0x69"},
		{"qemu-system-x86_64: Error loading uncompressed kernel without PVH ELF Note\n", "Error loading uncompressed kernel without PVH ELF Note"},
		{"qemu-system-x86_64: terminating on signal 15 from pid 12\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := qemuMessage(tt.stderr); got != tt.want {
			t.Errorf("qemuMessage(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}

func TestQuoteArgs(t *testing.T) {
	got := quoteArgs([]string{"/usr/bin/qemu", "-append", "console=ttyS0 quiet", "it's", ""})
	want := `/usr/bin/qemu -append 'console=ttyS0 quiet' 'it'\''s' ''`
	if got != want {
		t.Errorf("quoteArgs = %s, want %s", got, want)
	}
}

// TestExitError checks how a stopped guest is named from its console:
// only a stop without a crash or panic on the console is ErrQEMUStopped
// (what Ctrl-a x in guest shell gives), so that a crashed agent is never
// taken for the user stopping qemu.
func TestExitError(t *testing.T) {
	tests := []struct {
		name        string
		hello       bool
		console     string
		want        error
		wantStopped bool
	}{
		{"stopped from outside", true, "kata-cr-guest:/# \r\n", ErrAgentExited, true},
		{"agent crashed", true, "[    3.2] " + AgentGoneMarker + "\r\n", ErrAgentExited, false},
		{"init exited", true, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n", ErrAgentExited, false},
		{"kernel panic", true, "Kernel panic - not syncing: VFS: Unable to mount root fs\r\n", ErrKernelPanic, false},
		{"before hello", false, "Booting the kernel.\r\n", ErrGuestExited, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "console.log")
			if err := os.WriteFile(p, []byte(tt.console), 0o644); err != nil {
				t.Fatal(err)
			}
			vm := &VM{console: p, hello: tt.hello}
			err := vm.exitError()
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if got := errors.Is(err, ErrQEMUStopped); got != tt.wantStopped {
				t.Errorf("errors.Is(%v, ErrQEMUStopped) = %v, want %v", err, got, tt.wantStopped)
			}
			var ge *GuestError
			if !errors.As(err, &ge) || len(ge.Console) == 0 {
				t.Errorf("error %v carries no console tail", err)
			}
		})
	}
}
