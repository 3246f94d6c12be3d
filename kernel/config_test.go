package kernel

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      map[string]State
		values    map[string]string
		version   string
		arch      string
		badLines  int
		errSubstr string
	}{
		{
			name: "plain config",
			in: `#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.0 Kernel Configuration
#
CONFIG_X86_64=y
CONFIG_CHECKPOINT_RESTORE=y
CONFIG_UNIX_DIAG=m
# CONFIG_NETLINK_DIAG is not set
CONFIG_HZ=250
CONFIG_LOCALVERSION="-kata"
CONFIG_PHYSICAL_START=0x1000000
`,
			want: map[string]State{
				"CHECKPOINT_RESTORE": Enabled, "CONFIG_UNIX_DIAG": Module,
				"NETLINK_DIAG": Missing, "INET_DIAG": Missing,
			},
			values:  map[string]string{"HZ": "250", "LOCALVERSION": `"-kata"`, "PHYSICAL_START": "0x1000000"},
			version: "6.1.0",
			arch:    "x86_64",
		},
		{
			name: "later line wins, =n unsets",
			in:   "CONFIG_A=y\nCONFIG_B=y\nCONFIG_A=n\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_C=y\n",
			want: map[string]State{"A": Missing, "B": Missing, "C": Enabled},
		},
		{
			name:     "garbage lines are counted and skipped",
			in:       "CONFIG_A=y\nthis is junk\nCONFIG_B=maybe\nCONFIG_C=\"unterminated\nCONFIG_D=m\r\n=y\n",
			want:     map[string]State{"A": Enabled, "B": Missing, "C": Missing, "D": Module},
			badLines: 4,
		},
		{
			name:   "escaped quotes in strings",
			in:     `CONFIG_CMDLINE="a \"b\" c"` + "\n" + `CONFIG_BAD="x\"` + "\n",
			values: map[string]string{"CMDLINE": `"a \"b\" c"`},
			want:   map[string]State{"BAD": Missing},
			// CONFIG_BAD's closing quote is escaped.
			badLines: 1,
		},
		{name: "empty", in: "", errSubstr: "has no CONFIG_ options"},
		{name: "comments only", in: "# hello\n\n# world\n", errSubstr: "has no CONFIG_ options"},
		{name: "prose", in: "Dear reader,\nthis is a letter.\n", errSubstr: "is not a kernel config"},
		{name: "arm64", in: "CONFIG_ARM64=y\n", arch: "arm64", want: map[string]State{"ARM64": Enabled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.in), "test.config")
			if tt.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errSubstr) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.errSubstr)
				}
				if !strings.Contains(err.Error(), "test.config") {
					t.Errorf("error %q does not name the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for opt, want := range tt.want {
				if got := c.State(opt); got != want {
					t.Errorf("State(%s) = %s, want %s", opt, got, want)
				}
			}
			for opt, want := range tt.values {
				if got := c.Values[opt]; got != want {
					t.Errorf("Values[%s] = %q, want %q", opt, got, want)
				}
			}
			if c.Version != tt.version {
				t.Errorf("Version = %q, want %q", c.Version, tt.version)
			}
			if c.Arch != tt.arch {
				t.Errorf("Arch = %q, want %q", c.Arch, tt.arch)
			}
			if c.BadLines != tt.badLines {
				t.Errorf("BadLines = %d, want %d (warnings %q)", c.BadLines, tt.badLines, c.Warnings)
			}
			if tt.badLines > 0 && (len(c.Warnings) == 0 || !strings.Contains(c.Warnings[0], "test.config:")) {
				t.Errorf("Warnings = %q, want file:line of the first bad line", c.Warnings)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add("CONFIG_A=y\n# CONFIG_B is not set\n")
	f.Add("# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_S=\"a\\\"b\"\n")
	f.Add("junk\x00\xff\nCONFIG_=y\nCONFIG_X=\"\\\n")
	f.Add("\x1f\x8b\x08\x00")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(strings.NewReader(s), "fuzz")
		if err == nil {
			for k := range c.Values {
				_ = c.State(k)
			}
		}
		// The content sniffing path must not panic either.
		_, _ = FromBytes([]byte(s), "fuzz")
	})
}
