package checks

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"golang.org/x/sys/unix"
)

func TestMaskedDirs(t *testing.T) {
	const root = "200 150 0:60 / / rw - overlay overlay rw\n"
	tests := []struct {
		name, mountinfo string
		want            []string
	}{
		{"masked directories", root +
			"201 200 0:61 / /proc rw - proc proc rw\n" +
			"202 201 0:75 / /proc/acpi ro,relatime - tmpfs tmpfs ro\n" +
			"203 200 0:76 / /sys/firmware ro,relatime - tmpfs tmpfs ro,size=0k\n",
			[]string{"/proc/acpi", "/sys/firmware"}},
		{"read-only per mount only: the superblock is writable", root +
			"202 200 0:75 / /data ro,relatime - tmpfs tmpfs rw\n", nil},
		{"a bind of a subtree", root +
			"202 200 0:75 /sub /data ro - tmpfs tmpfs ro\n", nil},
		{"something mounted below it", root +
			"202 200 0:75 / /data ro - tmpfs tmpfs ro\n" +
			"203 202 0:76 / /data/x rw - tmpfs tmpfs rw\n", nil},
		{"not tmpfs", root +
			"202 200 0:75 / /sys ro - sysfs sysfs ro\n", nil},
		{"a read-only tmpfs as the root", "200 150 0:60 / / ro - tmpfs tmpfs ro\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := procParseMountInfo([]byte(tc.mountinfo))
			if err != nil {
				t.Fatal(err)
			}
			v := &procMountView{Mounts: ms}
			v.Root = procNSRoot(ms)
			var got []string
			for _, m := range v.maskedDirs() {
				got = append(got, m.MountPoint)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("maskedDirs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMaskedKeys(t *testing.T) {
	for _, tc := range []struct{ target, key string }{
		{"/proc/acpi", "masked-proc-acpi"},
		{"/sys/devices/virtual/powercap", "masked-sys-devices-virtual-powercap"},
		{"/odd dir/x:y", "masked-odd_dir-x_y"},
	} {
		if got := MaskedKey(tc.target); got != tc.key || !IsMaskedKey(got) {
			t.Errorf("MaskedKey(%q) = %q, want %q", tc.target, got, tc.key)
		}
	}
	if IsMaskedKey("hosts") {
		t.Error("IsMaskedKey(hosts) = true")
	}
	dump := criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}, {Key: "masked-proc-acpi", Path: "/proc/acpi"}}}
	if got := MaskedMounts("/proc", 42, dump); !slices.Equal(got, []string{"/proc/42/root/proc/acpi"}) {
		t.Errorf("MaskedMounts = %q", got)
	}
}

// TestEmptyReadOnly mounts real tmpfs instances, as the container's init
// masks a directory and as the agent mounts the restore source.
func TestEmptyReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestEmptyReadOnly mounts tmpfs: run it as root (CI does)")
	}
	mount := func(t *testing.T, flags uintptr, fill bool) string {
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		if fill {
			if err := os.WriteFile(filepath.Join(dir, "state"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|flags, ""); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name    string
		flags   uintptr
		fill    bool
		wantErr string
	}{
		{"empty and read-only", unix.MS_RDONLY, false, ""},
		{"writable", 0, false, "is writable"},
		{"read-only with a file", unix.MS_RDONLY, true, "holds state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := EmptyReadOnly(mount(t, tc.flags, tc.fill))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("EmptyReadOnly: %v, want %q", err, tc.wantErr)
			}
		})
	}
	if err := EmptyReadOnly(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("EmptyReadOnly of a missing directory: no error")
	}
}
