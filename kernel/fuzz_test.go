package kernel

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Kernel configs, images, fragments, modules.dep and Kata's configuration
// come from the user: no input may panic their readers.

func FuzzFromBytes(f *testing.F) {
	f.Add([]byte("CONFIG_CHECKPOINT_RESTORE=y\n# CONFIG_UNIX_DIAG is not set\n"))
	f.Add([]byte{0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3})
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = FromBytes(data, "fuzz")
	})
}

func FuzzParseModulesDep(f *testing.F) {
	f.Add([]byte("kernel/net/unix/unix_diag.ko: \nkernel/net/ipv4/tcp_diag.ko: kernel/net/ipv4/inet_diag.ko\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseModulesDep(bytes.NewReader(data))
	})
}

func FuzzLoadFragment(f *testing.F) {
	f.Add([]byte("# !s390\nCONFIG_CHECKPOINT_RESTORE=y\n"))
	f.Add([]byte("CONFIG_X=\"a b\"\nCONFIG_Y=m\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		for _, d := range []string{"common", "x86_64"} {
			if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "common", "fuzz.conf"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = LoadFragments(dir, "x86_64")
	})
}

func FuzzReadKataConfig(f *testing.F) {
	f.Add([]byte("[hypervisor.qemu]\npath = \"/usr/bin/qemu\"\nkernel = \"/usr/share/kata-containers/vmlinux.container\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "configuration.toml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = ReadKataConfig(p)
	})
}
