package kernel

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

const kataTree = "testdata/kata-fragments"

// copyTree copies a directory tree into a fresh temporary directory.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func missingOptions(c *Config, levels ...reports.Level) []string {
	var out []string
	for _, r := range MissingAt(Evaluate(c), levels...) {
		out = append(out, r.Option)
	}
	return out
}

// TestKataTreeMissesCRIUOptions is the first check: Kata's own
// fragments, merged for x86_64, lack CHECKPOINT_RESTORE and the sock-diag
// options; EVENTFD and SYSVIPC_SYSCTL are on through Kconfig alone.
func TestKataTreeMissesCRIUOptions(t *testing.T) {
	c, err := LoadFragments(kataTree, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if c.Arch != "x86_64" {
		t.Errorf("Arch = %q", c.Arch)
	}
	got := missingOptions(c, reports.Required)
	want := []string{"CHECKPOINT_RESTORE", "UNIX_DIAG", "INET_DIAG", "INET_TCP_DIAG", "INET_UDP_DIAG", "NETLINK_DIAG"}
	if !slices.Equal(got, want) {
		t.Errorf("missing required = %v, want %v", got, want)
	}
	for opt, why := range map[string]string{
		"EVENTFD":        "selected by CONFIG_MEMCG",
		"SYSVIPC_SYSCTL": "no prompt",
	} {
		if c.State(opt) != Enabled || !strings.Contains(c.Implied[opt], why) {
			t.Errorf("%s: state %s, implied %q; want enabled, %q", opt, c.State(opt), c.Implied[opt], why)
		}
	}
	if c.Origin["PACKET_DIAG"] != "common/network.conf" {
		t.Errorf("Origin[PACKET_DIAG] = %q", c.Origin["PACKET_DIAG"])
	}
	if len(c.Excluded) != 0 {
		t.Errorf("x86_64 excluded %v, want none", c.Excluded)
	}
}

// TestEmittedFragmentFixesKataTree is the second check: with the
// emitted fragment in x86_64/, no required option is missing.
func TestEmittedFragmentFixesKataTree(t *testing.T) {
	tree := copyTree(t, kataTree)
	c, err := LoadFragments(tree, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	frag := EmitFragment(c, MissingAt(Evaluate(c), reports.Required, reports.Recommended)...)
	for _, want := range []string{"CONFIG_CHECKPOINT_RESTORE=y\n", "CONFIG_UNIX_DIAG=y\n", "CONFIG_INET_DIAG=y\n",
		"CONFIG_INET_UDP_DIAG=y\n", "CONFIG_NETLINK_DIAG=y\n", "CONFIG_MEM_SOFT_DIRTY=y\n", "# Turned on by INET_DIAG above."} {
		if !strings.Contains(string(frag), want) {
			t.Errorf("fragment lacks %q:\n%s", want, frag)
		}
	}
	// Options the tree already sets are not repeated: Kata's build lists
	// redundant settings.
	for _, no := range []string{"CONFIG_UNIX=y", "CONFIG_INET=y", "CONFIG_NAMESPACES=y"} {
		if strings.Contains(string(frag), no) {
			t.Errorf("fragment repeats %s", no)
		}
	}
	if err := os.WriteFile(filepath.Join(tree, "x86_64", "criu.conf"), frag, 0o644); err != nil {
		t.Fatal(err)
	}
	fixed, err := LoadFragments(tree, "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if got := missingOptions(fixed, reports.Required, reports.Recommended); len(got) != 0 {
		t.Errorf("after adding the fragment still missing %v", got)
	}
	if fixed.State("INET_TCP_DIAG") != Enabled {
		t.Errorf("INET_TCP_DIAG = %s, want it to follow INET_DIAG", fixed.State("INET_TCP_DIAG"))
	}
}

func TestLoadFragments(t *testing.T) {
	write := func(t *testing.T, root string, files map[string]string) {
		t.Helper()
		for name, body := range files {
			p := filepath.Join(root, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name      string
		files     map[string]string
		arch      string
		dir       string // relative to the tree, "" for the root
		want      map[string]State
		excluded  []string
		badLines  int
		errSubstr string
	}{
		{
			name: "arch wins over common, later file over earlier",
			files: map[string]string{
				"common/a.conf":  "CONFIG_A=y\nCONFIG_B=y\n",
				"common/b.conf":  "# CONFIG_B is not set\nCONFIG_C=m\n",
				"x86_64/z.conf":  "CONFIG_C=y\nCONFIG_A=n\n",
				"arm64/arm.conf": "CONFIG_ARMONLY=y\n",
			},
			arch: "x86_64",
			want: map[string]State{"A": Missing, "B": Missing, "C": Enabled, "ARMONLY": Missing},
		},
		{
			name: "!arch in a header excludes the file; !s390x excludes s390",
			files: map[string]string{
				"common/acpi.conf": "# !s390x !powerpc\n\nCONFIG_ACPI=y\n",
				"common/mmu.conf":  "#!powerpc\nCONFIG_MMUX=y\n",
				"s390/base.conf":   "CONFIG_S390=y\n",
			},
			arch:     "s390x",
			want:     map[string]State{"ACPI": Missing, "MMUX": Enabled, "S390": Enabled},
			excluded: []string{"common/acpi.conf"},
		},
		{
			name:  "configs/ directory above fragments/",
			files: map[string]string{"fragments/common/a.conf": "CONFIG_A=y\n", "fragments/riscv/b.conf": "CONFIG_B=y\n"},
			arch:  "riscv64",
			want:  map[string]State{"A": Enabled, "B": Enabled},
		},
		{
			name:     "garbage lines are counted",
			files:    map[string]string{"common/a.conf": "CONFIG_A=y\nnonsense here\n", "x86_64/b.conf": "CONFIG_B=y\n"},
			arch:     "x86_64",
			want:     map[string]State{"A": Enabled},
			badLines: 1,
		},
		{
			name:      "no fragments for the arch",
			files:     map[string]string{"common/a.conf": "CONFIG_A=y\n", "x86_64/b.conf": "CONFIG_B=y\n"},
			arch:      "arm64",
			errSubstr: "has no arm64/*.conf fragments (arches here: x86_64): pass --arch",
		},
		{
			name:      "unknown arch",
			files:     map[string]string{"common/a.conf": "CONFIG_A=y\n"},
			arch:      "mips",
			errSubstr: `arch "mips": use one of x86_64, arm64, s390, powerpc, riscv`,
		},
		{
			name:      "directory without fragments",
			files:     map[string]string{"README": "hello\n"},
			arch:      "x86_64",
			errSubstr: "without a common/ fragment directory",
		},
		{
			name:      "binary fragment",
			files:     map[string]string{"common/a.conf": "CONFIG_A=y\n", "x86_64/blob.conf": "\x00\x01\x02"},
			arch:      "x86_64",
			errSubstr: "x86_64/blob.conf is a binary file",
		},
		{
			name:      "fragments set nothing",
			files:     map[string]string{"common/a.conf": "# nothing\n", "x86_64/b.conf": "\n"},
			arch:      "x86_64",
			errSubstr: "set no CONFIG_ option",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, tt.files)
			c, err := LoadFragments(filepath.Join(root, tt.dir), tt.arch)
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("error = %v, want %q", err, tt.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for opt, want := range tt.want {
				if got := c.State(opt); got != want {
					t.Errorf("State(%s) = %s, want %s", opt, got, want)
				}
			}
			if !slices.Equal(c.Excluded, tt.excluded) {
				t.Errorf("Excluded = %v, want %v", c.Excluded, tt.excluded)
			}
			if c.BadLines != tt.badLines {
				t.Errorf("BadLines = %d, want %d", c.BadLines, tt.badLines)
			}
		})
	}

	t.Run("unreadable fragment", func(t *testing.T) {
		root := t.TempDir()
		write(t, root, map[string]string{"common/a.conf": "CONFIG_A=y\n", "x86_64/b.conf": "CONFIG_B=y\n"})
		if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(root, "x86_64", "c.conf")); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFragments(root, "x86_64")
		if err == nil || !strings.Contains(err.Error(), "c.conf") {
			t.Fatalf("error = %v, want one naming c.conf", err)
		}
	})
}

func TestKconfigImplied(t *testing.T) {
	tests := []struct {
		name string
		frag string
		want map[string]State
	}{
		{
			name: "EXPERT off: hidden prompts keep their defaults",
			frag: "CONFIG_PROC_FS=y\nCONFIG_SYSVIPC=y\nCONFIG_MULTIUSER=y\n",
			want: map[string]State{"EVENTFD": Enabled, "EPOLL": Enabled, "FHANDLE": Enabled, "NAMESPACES": Enabled,
				"PROC_SYSCTL": Enabled, "SYSVIPC_SYSCTL": Enabled, "PROC_PAGE_MONITOR": Enabled, "UTS_NS": Missing},
		},
		{
			name: "EXPERT on: hidden prompts are asked, and allnoconfig says no",
			frag: "CONFIG_EXPERT=y\nCONFIG_PROC_FS=y\nCONFIG_SYSVIPC=y\n",
			want: map[string]State{"EVENTFD": Missing, "EPOLL": Missing, "PROC_SYSCTL": Missing, "SYSVIPC_SYSCTL": Missing},
		},
		{
			name: "select wins over a visible prompt",
			frag: "CONFIG_EXPERT=y\nCONFIG_MEMCG=y\nCONFIG_PROC_FS=y\nCONFIG_CHECKPOINT_RESTORE=y\nCONFIG_MEM_SOFT_DIRTY=y\n",
			want: map[string]State{"EVENTFD": Enabled, "PROC_PAGE_MONITOR": Enabled},
		},
		{
			name: "def_tristate follows: tcp_diag is a module when inet_diag is",
			frag: "CONFIG_INET=y\nCONFIG_INET_DIAG=m\n",
			want: map[string]State{"INET_TCP_DIAG": Module},
		},
		{
			name: "is not set cannot turn off an option without a prompt",
			frag: "CONFIG_INET_DIAG=y\n# CONFIG_INET_TCP_DIAG is not set\n",
			want: map[string]State{"INET_TCP_DIAG": Enabled},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range []string{"common", "x86_64"} {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(root, "x86_64", "t.conf"), []byte(tt.frag), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := LoadFragments(root, "x86_64")
			if err != nil {
				t.Fatal(err)
			}
			for opt, want := range tt.want {
				if got := c.State(opt); got != want {
					t.Errorf("State(%s) = %s (%s), want %s", opt, got, c.Implied[opt], want)
				}
			}
		})
	}
}

func TestKataArch(t *testing.T) {
	for in, want := range map[string]string{
		"amd64": "x86_64", "x86_64": "x86_64", "arm64": "arm64", "aarch64": "arm64", "s390x": "s390",
		"ppc64le": "powerpc", "riscv64": "riscv", "mips": "",
	} {
		if got := KataArch(in); got != want {
			t.Errorf("KataArch(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFragmentModelMatchesKconfig compares LoadFragments with what real
// Kconfig made of the same tree (testdata/README says how): every
// requirement must come out the same, including those no fragment sets.
func TestFragmentModelMatchesKconfig(t *testing.T) {
	for _, arch := range []string{"x86_64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			model, err := LoadFragments(kataTree, arch)
			if err != nil {
				t.Fatal(err)
			}
			kc, err := Load("testdata/kata-merged-linux-6.1-" + arch + ".config.gz")
			if err != nil {
				t.Fatal(err)
			}
			if kc.Arch != arch {
				t.Errorf("merged config arch = %q", kc.Arch)
			}
			for _, r := range Requirements(arch) {
				if got, want := model.State(r.Option), kc.State(r.Option); got != want {
					t.Errorf("%s: fragments give %s (%s), Kconfig gave %s", r.Option, got, model.Status(r).Origin, want)
				}
			}
		})
	}
}
