package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// writeBundle writes a bundle with the generated spec for args, edited by
// edit, and an empty rootfs directory.
func writeBundle(t *testing.T, args []string, edit func(s *specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := container.GenerateSpec("test", args)
	if edit != nil {
		edit(s)
	}
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, container.BundleConfig), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestParseProbe(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{"cat /run/state", []string{"cat", "/run/state"}, ""},
		{"  wget  -qO-   http://127.0.0.1:8080/ ", []string{"wget", "-qO-", "http://127.0.0.1:8080/"}, ""},
		{`["python3","-c","import sys; print(sys.argv)"]`, []string{"python3", "-c", "import sys; print(sys.argv)"}, ""},
		{`["sh", "-c", "test -s /run/state"]`, []string{"sh", "-c", "test -s /run/state"}, ""},
		{"", nil, "an empty command"},
		{"[]", nil, "an empty command"},
		{`["a", 1]`, nil, "not a JSON array of strings"},
		{`[python3]`, nil, "not a JSON array of strings"},
	}
	for _, tt := range tests {
		got, err := parseProbe(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("parseProbe(%q) = %q, %v: want an error with %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || !slices.Equal(got, tt.want)):
			t.Errorf("parseProbe(%q) = %q, %v: want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestCheckpointBundleFlags: --bundle and the repeatable --verify-exec
// flags are captured, each command as its argv, in order.
func TestCheckpointBundleFlags(t *testing.T) {
	var got *checkpointOptions
	deps := &Deps{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, IsTerminal: func(io.Writer) bool { return false }, Getenv: os.Getenv}
	c := newCheckpointCmdWith(deps, &globalOptions{}, func(_ context.Context, o *checkpointOptions) error {
		got = o
		return nil
	})
	c.SetArgs([]string{"--bundle", "/b", "--auto-fix",
		"--verify-exec-before", "cat /run/n",
		"--verify-exec", `["sh","-c","test $(cat /run/n) -gt 3"]`, "--verify-exec", "true"})
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Bundle != "/b" || !got.AutoFix {
		t.Errorf("options %+v", got)
	}
	if b := got.VerifyExecBefore.Argvs(); len(b) != 1 || !slices.Equal(b[0], []string{"cat", "/run/n"}) {
		t.Errorf("verify-exec-before %q", b)
	}
	a := got.VerifyExec.Argvs()
	if len(a) != 2 || !slices.Equal(a[0], []string{"sh", "-c", "test $(cat /run/n) -gt 3"}) || !slices.Equal(a[1], []string{"true"}) {
		t.Errorf("verify-exec %q", a)
	}
}

// TestCheckpointBundleBadInput: a bundle kata-cr cannot run as Kata would
// is refused before any boot with one line naming the key, exit 2.
func TestCheckpointBundleBadInput(t *testing.T) {
	sleep := []string{"sleep", "3600"}
	tests := []struct {
		name string
		args func(t *testing.T) []string
		want string
	}{
		{"no config.json", func(t *testing.T) []string { return []string{"--bundle", t.TempDir()} }, "config.json: no such file or directory"},
		{"unknown key", func(t *testing.T) []string {
			dir := writeBundle(t, sleep, nil)
			p := filepath.Join(dir, container.BundleConfig)
			data, _ := os.ReadFile(p)
			data = bytes.Replace(data, []byte(`"process":`), []byte(`"procces":{},"process":`), 1)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--bundle", dir}
		}, `unknown field "procces"`},
		{"apparmor", func(t *testing.T) []string {
			return []string{"--bundle", writeBundle(t, sleep, func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" })}
		}, "config.json: process.apparmorProfile: the guest has no AppArmor"},
		{"a bind of a host path", func(t *testing.T) []string {
			return []string{"--bundle", writeBundle(t, sleep, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind"}})
			})}
		}, "config.json: mounts[7] (/data)"},
		{"user namespace", func(t *testing.T) []string {
			return []string{"--bundle", writeBundle(t, sleep, func(s *specs.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			})}
		}, "config.json: linux.namespaces[6] (user)"},
		{"hooks", func(t *testing.T) []string {
			return []string{"--bundle", writeBundle(t, sleep, func(s *specs.Spec) {
				s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}}}
			})}
		}, "config.json: hooks"},
		{"rootfs missing", func(t *testing.T) []string {
			return []string{"--bundle", writeBundle(t, sleep, func(s *specs.Spec) { s.Root.Path = "nope" })}
		}, "root.path nope: no such file or directory"},
		{"bundle and a workload", func(t *testing.T) []string { return []string{"counter", "--bundle", writeBundle(t, sleep, nil)} }, "give no workload name or command"},
		{"bundle and -t", func(t *testing.T) []string { return []string{"-t", "--bundle", writeBundle(t, sleep, nil)} }, "process.terminal in config.json"},
		{"bad probe", func(t *testing.T) []string { return []string{"--verify-exec", `["x",`} }, "not a JSON array of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"checkpoint", "--images-dir", filepath.Join(t.TempDir(), "images")}, tt.args(t)...)
			code, stdout, stderr := runKataCR(args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr %q", code, ExitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", stderr, tt.want)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout, got stderr %q stdout %q", stderr, stdout)
			}
		})
	}
}
