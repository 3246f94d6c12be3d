package kernel

import (
	"slices"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/reports"
)

func TestRequirementTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range requirements {
		if seen[r.Option] {
			t.Errorf("%s listed twice", r.Option)
		}
		seen[r.Option] = true
		if r.Title == "" || r.Breaks == "" {
			t.Errorf("%s: title and breaks are needed", r.Option)
		}
		switch r.Level {
		case reports.Required, reports.Recommended, reports.Optional:
		default:
			t.Errorf("%s: level %q", r.Option, r.Level)
		}
		if strings.HasPrefix(r.Option, "CONFIG_") {
			t.Errorf("%s: write options without CONFIG_", r.Option)
		}
		if !slices.Contains(r.EnableOptions(), r.Option) && r.Hint == "" {
			t.Errorf("%s: Enable leaves the option out; say why in Hint", r.Option)
		}
	}
	// criu.org's required list must all be required.
	for _, o := range []string{"CHECKPOINT_RESTORE", "NAMESPACES", "UTS_NS", "IPC_NS", "PID_NS", "NET_NS", "FHANDLE",
		"EVENTFD", "EPOLL", "UNIX_DIAG", "INET_DIAG", "INET_UDP_DIAG", "PACKET_DIAG", "NETLINK_DIAG",
		"NETFILTER_XT_MARK", "TUN", "SYSVIPC_SYSCTL", "MEMBARRIER"} {
		r, ok := Lookup("CONFIG_" + o)
		if !ok || r.Level != reports.Required {
			t.Errorf("%s: want a required row, got %+v", o, r)
		}
	}
	if r, _ := Lookup("MEMBARRIER"); r.MinCRIU != 31900 {
		t.Errorf("MEMBARRIER MinCRIU = %d, want 31900 (CRIU 3.19)", r.MinCRIU)
	}
}

func TestRequirementsByArch(t *testing.T) {
	has := func(reqs []Requirement, opt string) bool {
		return slices.ContainsFunc(reqs, func(r Requirement) bool { return r.Option == opt })
	}
	if !has(Requirements("x86_64"), "IA32_EMULATION") || has(Requirements("arm64"), "IA32_EMULATION") {
		t.Error("IA32_EMULATION applies to x86_64 only")
	}
	if has(Requirements("arm64"), "MEM_SOFT_DIRTY") || !has(Requirements("s390"), "MEM_SOFT_DIRTY") {
		t.Error("MEM_SOFT_DIRTY applies where the arch has soft-dirty")
	}
	if len(Requirements("")) != len(requirements) {
		t.Error("Requirements(\"\") must return every row")
	}
}

func TestLevelFor(t *testing.T) {
	mb, _ := Lookup("MEMBARRIER")
	nft, _ := Lookup("NF_TABLES")
	cr, _ := Lookup("CHECKPOINT_RESTORE")
	tests := []struct {
		r    Requirement
		criu int
		want reports.Level
	}{
		{mb, 0, reports.Required},
		{mb, 31701, reports.Optional},
		{mb, 31900, reports.Required},
		{nft, 31701, reports.Required},
		{nft, 40101, reports.Recommended},
		{cr, 40101, reports.Required},
	}
	for _, tt := range tests {
		if got := tt.r.LevelFor(tt.criu); got != tt.want {
			t.Errorf("%s.LevelFor(%d) = %s, want %s", tt.r.Option, tt.criu, got, tt.want)
		}
	}
}

func TestCRIUModules(t *testing.T) {
	got := CRIUModules()
	for _, m := range []string{"unix_diag", "inet_diag", "tcp_diag", "udp_diag", "af_packet_diag", "netlink_diag", "nf_tables", "tun", "veth"} {
		if !slices.Contains(got, m) {
			t.Errorf("CRIUModules() lacks %s: %v", m, got)
		}
	}
	for _, m := range []string{"nfnetlink", "libcrc32c", "crc32c_generic"} {
		if slices.Contains(got, m) {
			t.Errorf("CRIUModules() lists dependency %s: the closure resolves those", m)
		}
	}
}

func TestEmitFragment(t *testing.T) {
	cr, _ := Lookup("CHECKPOINT_RESTORE")
	tcp, _ := Lookup("INET_TCP_DIAG")
	tests := []struct {
		name    string
		have    *Config
		missing []Requirement
		want    []string
		wantNot []string
	}{
		{name: "nothing missing", want: []string{"# Nothing is missing."}, wantNot: []string{"CONFIG_"}},
		{
			name:    "old kernel needs EXPERT",
			have:    &Config{Values: map[string]string{"PROC_FS": "y"}, Version: "4.14.0"},
			missing: []Requirement{cr},
			want:    []string{"CONFIG_EXPERT=y\nCONFIG_CHECKPOINT_RESTORE=y\n"},
		},
		{
			name:    "new kernel does not",
			have:    &Config{Values: map[string]string{}, Version: "6.18.35"},
			missing: []Requirement{cr},
			want:    []string{"CONFIG_CHECKPOINT_RESTORE=y\n"},
			wantNot: []string{"EXPERT"},
		},
		{
			name:    "unknown version gets a comment",
			missing: []Requirement{cr},
			want:    []string{"# On kernels before 4.19 this also needs EXPERT=y.\nCONFIG_CHECKPOINT_RESTORE=y\n"},
		},
		{
			name:    "an option without a prompt is enabled through its dependency",
			have:    &Config{Values: map[string]string{"INET": "y"}},
			missing: []Requirement{tcp},
			want:    []string{"CONFIG_INET_DIAG=y\n"},
			wantNot: []string{"CONFIG_INET=y", "CONFIG_INET_TCP_DIAG=y"},
		},
		{
			name:    "dependencies met and still off",
			have:    &Config{Values: map[string]string{"INET": "y", "INET_DIAG": "y"}},
			missing: []Requirement{tcp},
			want:    []string{"# INET_TCP_DIAG stays off although INET, INET_DIAG are set"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(EmitFragment(tt.have, tt.missing...))
			if !strings.HasPrefix(got, "# CRIU checkpoint/restore support, written by kata-cr.\n") {
				t.Errorf("no Kata-style header:\n%s", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("fragment lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(got, w) {
					t.Errorf("fragment has %q:\n%s", w, got)
				}
			}
			// No comment may name a CONFIG_ option: merge_config.sh would
			// take it for a second value of that option.
			for _, l := range strings.Split(got, "\n") {
				if strings.HasPrefix(l, "#") && strings.Contains(l, "CONFIG_") {
					t.Errorf("comment names an option with its prefix: %q", l)
				}
			}
			// Every line is a comment, blank, or CONFIG_X=y: a valid fragment.
			if _, err := Parse(strings.NewReader(got+"CONFIG_SENTINEL=y\n"), "frag"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestEmitFragmentCommentsForEveryRow(t *testing.T) {
	for _, l := range strings.Split(string(EmitFragment(nil, requirements...)), "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, "CONFIG_") {
			t.Errorf("comment names an option with its prefix: %q", l)
		}
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		in   string
		want Release
		err  bool
	}{
		{"6.1.0-56-amd64", Release{6, 1, 0}, false},
		{"7.3.0+deb13-amd64", Release{7, 3, 0}, false},
		{"6.18.44-fc-v669", Release{6, 18, 44}, false},
		{"6.13", Release{6, 13, 0}, false},
		{"v5.4.0-rc1", Release{5, 4, 0}, false},
		{"4.19.0", Release{4, 19, 0}, false},
		{"linux", Release{}, true},
		{"6", Release{}, true},
		{"", Release{}, true},
	}
	for _, tt := range tests {
		got, err := ParseRelease(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseRelease(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestCompatIssues(t *testing.T) {
	ids := func(is []CompatIssue) []string {
		var out []string
		for _, i := range is {
			out = append(out, i.ID)
		}
		return out
	}
	tests := []struct {
		kernel string
		criu   int
		want   []string
	}{
		{"6.18.44-fc-v669", 31701, []string{"compat.vdso-6.13", "compat.inet-sockopt-6.16"}},
		{"7.3.0+deb13-amd64", 31701, []string{"compat.vdso-6.13", "compat.inet-sockopt-6.16"}},
		{"6.13.0", 40000, []string{"compat.vdso-6.13"}},
		{"6.12.9", 31701, nil},
		{"6.1.0-56-amd64", 31701, nil},
		{"7.3.0+deb13-amd64", 40101, []string{"compat.inet-sockopt-6.16"}},
		{"6.18.44", 40100, []string{"compat.inet-sockopt-6.16"}},
		{"6.15.9", 40101, nil},
		{"6.16.0", 40101, []string{"compat.inet-sockopt-6.16"}},
		{"7.3.0+deb13-amd64", 40201, nil},
		{"5.10.0-30-amd64", 31701, []string{"compat.rseq-5.13"}},
		{"5.10.0-30-amd64", 31500, []string{"compat.rseq-criu-3.17"}},
		{"6.1.0", 0, nil},
		{"garbage", 31701, nil},
	}
	for _, tt := range tests {
		got := ids(CompatIssues(tt.kernel, tt.criu))
		if !slices.Equal(got, tt.want) {
			t.Errorf("CompatIssues(%q, %d) = %v, want %v", tt.kernel, tt.criu, got, tt.want)
		}
	}
	vdso := CompatIssues("6.18.0", 31701)[0]
	if !vdso.Blocking || !strings.Contains(vdso.Signature, "Unexpected rt vDSO area bounds") || !strings.Contains(vdso.Fix, "4.1") {
		t.Errorf("vdso row: %+v", vdso)
	}
	inet := CompatIssues("7.3.0+deb13-amd64", 40101)[0]
	if inet.Blocking || !inet.InetSockets || !strings.Contains(inet.Signature, "Can't get 1:16 opt") || !strings.Contains(inet.Fix, "4.2") {
		t.Errorf("inet row: %+v", inet)
	}
}
