package kernel

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	modules61 = "testdata/modules-6.1.0-56-amd64"
	modules73 = "testdata/modules-7.3.4+deb13-amd64"
)

func names(ms []ModuleFile) []string {
	var out []string
	for _, m := range ms {
		n := m.Name
		if m.Soft {
			n += "?"
		}
		out = append(out, n)
	}
	return out
}

func TestClosure(t *testing.T) {
	dep61, err := LoadModulesDep(modules61)
	if err != nil {
		t.Fatal(err)
	}
	dep73, err := LoadModulesDep(modules73)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		dep       *ModulesDep
		mods      []string
		want      []string // "?" marks a soft dependency
		errSubstr string
	}{
		{
			name: "nf_tables on 6.1 needs nfnetlink, libcrc32c and a crc32c provider first",
			dep:  dep61, mods: []string{"nf_tables"},
			want: []string{"crc32c_intel?", "crc32c_generic?", "libcrc32c", "nfnetlink", "nf_tables"},
		},
		{
			name: "nf_tables on 7.3 stands alone",
			dep:  dep73, mods: []string{"nf_tables"},
			want: []string{"nf_tables"},
		},
		{
			name: "diag modules: inet_diag once, before tcp_diag and udp_diag",
			dep:  dep61, mods: []string{"tcp_diag", "udp_diag", "inet_diag", "unix_diag"},
			want: []string{"inet_diag", "tcp_diag", "udp_diag", "unix_diag"},
		},
		{
			name: "dashes and underscores are the same module",
			dep:  dep61, mods: []string{"crc32c-intel", "af-packet-diag"},
			want: []string{"crc32c_intel", "af_packet_diag"},
		},
		{
			name: "a deep dependency list loads leaves first",
			dep:  dep61, mods: []string{"nft_ct"},
			want: []string{"crc32c_intel?", "crc32c_generic?", "libcrc32c", "nf_defrag_ipv4", "nf_defrag_ipv6",
				"nf_conntrack", "nfnetlink", "nf_tables", "nft_ct"},
		},
		{
			name: "a soft dependency needed for real stops being soft",
			dep:  dep61, mods: []string{"nf_tables", "crc32c_generic"},
			want: []string{"crc32c_intel?", "crc32c_generic", "libcrc32c", "nfnetlink", "nf_tables"},
		},
		{
			name: "built-in modules need no loading",
			dep:  dep61, mods: []string{"unix", "af_packet", "unix_diag"},
			want: []string{"unix_diag"},
		},
		{
			name: "every CRIU module resolves on 6.1",
			dep:  dep61, mods: CRIUModules(),
			want: []string{"unix_diag", "inet_diag", "tcp_diag", "udp_diag", "af_packet_diag", "netlink_diag",
				"x_tables", "xt_mark", "tun", "crc32c_intel?", "crc32c_generic?", "libcrc32c", "nfnetlink", "nf_tables", "veth"},
		},
		{
			name: "every CRIU module resolves on 7.3, compressed",
			dep:  dep73, mods: CRIUModules(),
			want: []string{"unix_diag", "inet_diag", "tcp_diag", "udp_diag", "af_packet_diag", "netlink_diag",
				"x_tables", "xt_mark", "tun", "nf_tables", "veth"},
		},
		{name: "unknown module", dep: dep61, mods: []string{"no_such_mod"}, errSubstr: "module no_such_mod is neither in " + modules61 + "/modules.dep nor built into the kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.dep.Closure(tt.mods...)
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("error = %v, want %q", err, tt.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("Closure(%v) = %v\nwant %v", tt.mods, names(got), tt.want)
			}
			// Whatever the order, each module comes after its dependencies.
			pos := map[string]int{}
			for i, m := range got {
				pos[m.Name] = i
			}
			for i, m := range got {
				for _, d := range tt.dep.deps[m.Name] {
					if p, ok := pos[d]; ok && p > i {
						t.Errorf("%s loads before its dependency %s", m.Name, d)
					}
				}
			}
		})
	}

	ms, _ := dep73.Closure("tcp_diag")
	if ms[1].Path != "kernel/net/ipv4/tcp_diag.ko.xz" {
		t.Errorf("path = %q", ms[1].Path)
	}
	if !dep61.Builtin("unix") || dep61.Builtin("unix_diag") || !dep61.Has("unix_diag") {
		t.Error("Builtin/Has")
	}
}

func TestParseModulesDep(t *testing.T) {
	if _, err := ParseModulesDep(strings.NewReader("kernel/a.ko:\nthis is not modules.dep\n")); err == nil ||
		!strings.Contains(err.Error(), "line 2") {
		t.Errorf("error = %v, want one naming line 2", err)
	}
	m, err := ParseModulesDep(strings.NewReader("# comment\n\nkernel/b-mod.ko.zst: kernel/a.ko.zst\nkernel/a.ko.zst:\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := m.Closure("b_mod")
	if err != nil || !slices.Equal(names(got), []string{"a", "b_mod"}) {
		t.Errorf("Closure = %v, %v", names(got), err)
	}
	m.parseBuiltin([]byte("kernel/a.ko\n"))
	if got, _ := m.Closure("b_mod"); !slices.Equal(names(got), []string{"b_mod"}) {
		t.Errorf("with a built in, Closure = %v", names(got))
	}
}

// TestClosureSoftThenHard: a module first reached as a soft dependency and
// then needed by a hard one must be loaded for real, and so must its own
// dependencies, whichever order the names come in.
func TestClosureSoftThenHard(t *testing.T) {
	m, err := ParseModulesDep(strings.NewReader("kernel/x.ko:\nkernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/y.ko: kernel/a.ko kernel/b.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.parseSoftdep([]byte("softdep x pre: a\n"))
	tests := []struct {
		name string
		mods []string
		want []string
	}{
		{name: "soft only", mods: []string{"x"}, want: []string{"b?", "a?", "x"}},
		{name: "soft then hard", mods: []string{"x", "y"}, want: []string{"b", "a", "x", "y"}},
		{name: "hard then soft", mods: []string{"y", "x"}, want: []string{"b", "a", "y", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Closure(tt.mods...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(names(got), tt.want) {
				t.Errorf("Closure(%v) = %v, want %v", tt.mods, names(got), tt.want)
			}
		})
	}
}

func TestLoadModulesDepErrors(t *testing.T) {
	if _, err := LoadModulesDep(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no modules.dep in") {
		t.Errorf("error = %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadModulesDep(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("error = %v, want one naming the directory", err)
	}
}

func TestNormalizeModule(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"kernel/net/ipv4/tcp_diag.ko.xz":         "tcp_diag",
		"nf_tables.ko.zst":                       "nf_tables",
		"crc32c-cryptoapi":                       "crc32c_cryptoapi",
	} {
		if got := NormalizeModule(in); got != want {
			t.Errorf("NormalizeModule(%q) = %q, want %q", in, got, want)
		}
	}
}
