package checks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/procfs"

	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/reports"
)

const (
	ktModules = "testdata/kernel/modules/6.1.0-56-amd64"
	ktSys     = "testdata/kernel/sys"
)

// ktConfig is an x86_64 config with every requirement but those in unset;
// the options in modules are =m.
func ktConfig(t *testing.T, unset []string, modules []string) *kernel.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Linux/x86 6.1.0 Kernel Configuration\nCONFIG_X86_64=y\n")
	skip := map[string]bool{}
	for _, o := range unset {
		skip[o] = true
	}
	mod := map[string]bool{}
	for _, o := range modules {
		mod[o] = true
	}
	for _, r := range kernel.Requirements("") {
		switch {
		case skip[r.Option]:
			fmt.Fprintf(&b, "# CONFIG_%s is not set\n", r.Option)
		case mod[r.Option]:
			fmt.Fprintf(&b, "CONFIG_%s=m\n", r.Option)
		default:
			fmt.Fprintf(&b, "CONFIG_%s=y\n", r.Option)
		}
	}
	c, err := kernel.Parse(strings.NewReader(b.String()), "test.config")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ktEnv is an Env reading the fixture proc tree procDir ("" for a config
// file checked on its own).
func ktEnv(t *testing.T, procDir string, cfg *kernel.Config) *Env {
	t.Helper()
	env := &Env{Config: cfg, KernelRelease: "6.1.0-56-amd64", ModulesDir: ktModules}
	if procDir != "" {
		fs, err := procfs.NewFS(procDir)
		if err != nil {
			t.Fatal(err)
		}
		env.ProcRoot, env.SysRoot, env.Proc = procDir, ktSys, fs
	}
	return env
}

func runKernel(t *testing.T, env *Env) map[string]reports.Finding {
	t.Helper()
	out := map[string]reports.Finding{}
	for _, f := range (Runner{Checks: KernelChecks()}).Run(context.Background(), env) {
		if _, dup := out[f.ID]; dup {
			t.Errorf("finding %s twice", f.ID)
		}
		out[f.ID] = f
	}
	return out
}

func TestKernelChecks(t *testing.T) {
	diagMods := []string{"UNIX_DIAG", "INET_DIAG", "INET_TCP_DIAG", "INET_UDP_DIAG", "NETLINK_DIAG", "NF_TABLES"}
	type want struct {
		status  reports.Status
		summary string  // substring
		fixer   FixerID // Fix.Fixer, "-" for no fix at all
	}
	tests := []struct {
		name  string
		env   func(t *testing.T) *Env
		wants map[string]want
	}{
		{
			name: "good config file",
			env:  func(t *testing.T) *Env { return ktEnv(t, "", ktConfig(t, nil, nil)) },
			wants: map[string]want{
				"kernel.config":             {reports.Pass, "kernel config read from test.config", "-"},
				"kernel.CHECKPOINT_RESTORE": {reports.Pass, "CONFIG_CHECKPOINT_RESTORE=y", "-"},
				"kernel.IA32_EMULATION":     {reports.Pass, "", "-"},
			},
		},
		{
			// The negative control: the same config without
			// CHECKPOINT_RESTORE fails what the good one passes.
			name: "config without CHECKPOINT_RESTORE",
			env: func(t *testing.T) *Env {
				return ktEnv(t, "", ktConfig(t, []string{"CHECKPOINT_RESTORE", "USERFAULTFD"}, nil))
			},
			wants: map[string]want{
				"kernel.CHECKPOINT_RESTORE": {reports.Fail, "CONFIG_CHECKPOINT_RESTORE is missing: criu cannot run", ""},
				"kernel.USERFAULTFD":        {reports.Warn, "CONFIG_USERFAULTFD is missing", ""},
				"kernel.UNIX_DIAG":          {reports.Pass, "", "-"},
			},
		},
		{
			name: "modules in a config file must be loaded later",
			env:  func(t *testing.T) *Env { return ktEnv(t, "", ktConfig(t, nil, diagMods)) },
			wants: map[string]want{
				"kernel.UNIX_DIAG": {reports.Warn, "module unix_diag must be loaded before criu runs", ""},
			},
		},
		{
			name: "live kernel, nothing loaded, no modprobe",
			env:  func(t *testing.T) *Env { return ktEnv(t, "testdata/kernel/proc-bare", ktConfig(t, nil, diagMods)) },
			wants: map[string]want{
				"kernel.UNIX_DIAG":     {reports.Fail, "module unix_diag is not loaded", FixerIDLoadModule},
				"kernel.INET_TCP_DIAG": {reports.Fail, "module tcp_diag is not loaded", FixerIDLoadModule},
				"kernel.NF_TABLES":     {reports.Fail, "module nf_tables is not loaded", FixerIDLoadModule},
				// udp_diag.ko is listed in modules.dep but not shipped.
				"kernel.INET_UDP_DIAG": {reports.Fail, "module udp_diag is not loaded", ""},
				// /sys/module/netlink_diag exists.
				"kernel.NETLINK_DIAG": {reports.Pass, "module netlink_diag loaded", "-"},
			},
		},
		{
			name: "live kernel, modules loaded",
			env:  func(t *testing.T) *Env { return ktEnv(t, "testdata/kernel/proc-loaded", ktConfig(t, nil, diagMods)) },
			wants: map[string]want{
				"kernel.UNIX_DIAG":     {reports.Pass, "module unix_diag loaded", "-"},
				"kernel.INET_UDP_DIAG": {reports.Pass, "module udp_diag loaded", "-"},
				"kernel.NF_TABLES":     {reports.Pass, "module nf_tables loaded", "-"},
			},
		},
		{
			name: "live kernel with a modprobe: modules load on demand",
			env: func(t *testing.T) *Env {
				proc := t.TempDir()
				helper := filepath.Join(proc, "modprobe")
				if err := os.WriteFile(helper, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(filepath.Join(proc, "sys/kernel"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(proc, "sys/kernel/modprobe"), []byte(helper+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(proc, "modules"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				return ktEnv(t, proc, ktConfig(t, nil, diagMods))
			},
			wants: map[string]want{
				"kernel.UNIX_DIAG": {reports.Pass, "module unix_diag loads on demand", "-"},
			},
		},
		{
			name: "live kernel without its modules directory",
			env: func(t *testing.T) *Env {
				env := ktEnv(t, "testdata/kernel/proc-bare", ktConfig(t, nil, diagMods))
				env.ModulesDir = t.TempDir()
				return env
			},
			wants: map[string]want{
				"kernel.UNIX_DIAG": {reports.Fail, "module unix_diag is not loaded", ""},
			},
		},
		{
			name: "arm64 config skips x86-only options",
			env: func(t *testing.T) *Env {
				c, err := kernel.Parse(strings.NewReader("CONFIG_ARM64=y\nCONFIG_CHECKPOINT_RESTORE=y\n"), "arm.config")
				if err != nil {
					t.Fatal(err)
				}
				return ktEnv(t, "", c)
			},
			wants: map[string]want{
				"kernel.IA32_EMULATION":     {reports.Skip, "", "-"},
				"kernel.MEM_SOFT_DIRTY":     {reports.Skip, "", "-"},
				"kernel.CHECKPOINT_RESTORE": {reports.Pass, "", "-"},
				"kernel.UNIX_DIAG":          {reports.Fail, "", ""},
			},
		},
		{
			name: "garbage lines in the config",
			env: func(t *testing.T) *Env {
				c, err := kernel.Parse(strings.NewReader("CONFIG_X86_64=y\nnot a config line\n"), "odd.config")
				if err != nil {
					t.Fatal(err)
				}
				return ktEnv(t, "", c)
			},
			wants: map[string]want{
				"kernel.config": {reports.Warn, "1 line(s) in odd.config were not understood", ""},
			},
		},
		{
			name: "no config: every check skips with the reason",
			env: func(t *testing.T) *Env {
				return &Env{ConfigSource: "no config found for the running kernel: pass --kernel-config FILE"}
			},
			wants: map[string]want{
				"kernel.config":             {reports.Skip, "", "-"},
				"kernel.CHECKPOINT_RESTORE": {reports.Skip, "", "-"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env(t)
			got := runKernel(t, env)
			if len(got) != len(kernel.Requirements(""))+1 {
				t.Errorf("%d findings, want one per requirement plus kernel.config", len(got))
			}
			for id, w := range tt.wants {
				f, ok := got[id]
				if !ok {
					t.Errorf("no finding %s", id)
					continue
				}
				if f.Status != w.status || !strings.Contains(f.Summary, w.summary) {
					t.Errorf("%s = %s %q, want %s %q (evidence %q, reason %q)", id, f.Status, f.Summary, w.status, w.summary, f.Evidence, f.Reason)
				}
				switch {
				case w.fixer == "-" && f.Fix != nil:
					t.Errorf("%s: unexpected fix %+v", id, f.Fix)
				case w.fixer != "-" && f.Fix == nil:
					t.Errorf("%s: no fix", id)
				case w.fixer != "-" && (f.Fix.Fixer != w.fixer || f.Fix.AutoFixable != (w.fixer != "")):
					t.Errorf("%s: fix %+v, want fixer %q", id, f.Fix, w.fixer)
				}
				if f.Status == reports.Skip && f.Reason == "" {
					t.Errorf("%s: skip without a reason", id)
				}
				if f.Status != reports.Skip && (len(f.Evidence) == 0 || !strings.HasPrefix(f.Evidence[0], "source: ")) {
					t.Errorf("%s: evidence %q does not name the source", id, f.Evidence)
				}
			}
		})
	}
}

func TestKernelChecksFixAdvice(t *testing.T) {
	got := runKernel(t, ktEnv(t, "", ktConfig(t, []string{"INET_TCP_DIAG", "INET_DIAG"}, nil)))
	f := got["kernel.INET_TCP_DIAG"]
	if f.Fix == nil || !strings.Contains(f.Fix.Description, "CONFIG_INET_DIAG=y") ||
		!strings.Contains(f.Fix.Description, "kata-cr kernel check --emit-fragment FILE") {
		t.Errorf("fix = %+v, want the options to set and the fragment command", f.Fix)
	}
	if !f.Blocking() {
		t.Error("a missing required option must block")
	}
}

func TestModuleFixer(t *testing.T) {
	fx := ModuleFixer()
	if fx.ID != FixerIDLoadModule {
		t.Fatalf("ID = %q", fx.ID)
	}
	ctx := context.Background()
	env := ktEnv(t, "testdata/kernel/proc-bare", ktConfig(t, nil, []string{"UNIX_DIAG"}))

	if _, err := fx.Apply(ctx, env, reports.Finding{ID: "kernel.CHECKPOINT_RESTORE"}); err == nil {
		t.Error("a finding without a module must be refused")
	}
	env.Root = false
	if _, err := fx.Apply(ctx, env, reports.Finding{ID: "kernel.UNIX_DIAG"}); err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("not root: error = %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the rest of this test calls finit_module, which needs root: run it as root (CI does)")
	}
	// As root the fixer really calls finit_module. The fixture's module
	// files are empty, so whatever the kernel (with module support or
	// without, as on a Firecracker host), loading fails, and the error
	// must name the file; ApplyFixes must record it, not panic.
	env.Root = true
	fs := []reports.Finding{{ID: "kernel.UNIX_DIAG", Level: reports.Required, Status: reports.Fail,
		Fix: &reports.Fix{AutoFixable: true, Fixer: FixerIDLoadModule}}}
	acts := ApplyFixes(ctx, env, fs, []Fixer{fx}, false)
	if len(acts) != 1 || acts[0].Applied || !strings.Contains(acts[0].Error, "unix_diag.ko") {
		t.Errorf("actions = %+v, want one failed action naming unix_diag.ko", acts)
	}
	dry := ApplyFixes(ctx, env, fs, []Fixer{fx}, true)
	if len(dry) != 1 || dry[0].Applied {
		t.Errorf("dry run = %+v", dry)
	}
}
