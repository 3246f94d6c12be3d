package cmd

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kata-cr/kata-cr/internal/promtool"
)

// daemonSetPath is the doctor's DaemonSet manifest.
const daemonSetPath = "../deploy/kubernetes/kata-cr-doctor-daemonset.yaml"

// textfileDir is node_exporter's textfile directory on the node.
const textfileDir = "/var/lib/node_exporter/textfile_collector"

// loadDaemonSet decodes the manifest with the Kubernetes API types,
// strictly: an unknown or duplicate field is an error.
func loadDaemonSet(t *testing.T, data []byte) (*appsv1.DaemonSet, error) {
	t.Helper()
	var ds appsv1.DaemonSet
	err := yaml.UnmarshalStrict(data, &ds)
	return &ds, err
}

func TestDaemonSetStrict(t *testing.T) {
	data, err := os.ReadFile(daemonSetPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadDaemonSet(t, data); err != nil {
		t.Fatalf("%s: %v", daemonSetPath, err)
	}
	// The decoding really is strict: a misspelt field fails it.
	for _, tt := range []struct{ name, from, to string }{
		{"a misspelt field", "privileged: true", "privilegd: true"},
		{"a field at the wrong level", "hostPID: true", "hostPID: true\n      hostPIDs: true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := bytes.Replace(data, []byte(tt.from), []byte(tt.to), 1)
			if bytes.Equal(bad, data) {
				t.Fatalf("%q is not in the manifest", tt.from)
			}
			if _, err := loadDaemonSet(t, bad); err == nil {
				t.Errorf("%s decodes without an error", tt.name)
			}
		})
	}
}

// TestDaemonSet checks what makes the DaemonSet work: the doctor's argv
// in each container parses as a kata-cr command line and writes
// prometheus metrics into the textfile directory, which is the node's; the
// pod is privileged and sees the node's processes; the host doctor reads
// the node's kernel config and modules, the guest doctor Kata's install.
// The host doctor's argv then runs here, and promtool checks its file.
func TestDaemonSet(t *testing.T) {
	data, err := os.ReadFile(daemonSetPath)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := loadDaemonSet(t, data)
	if err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion %s, kind %s", ds.APIVersion, ds.Kind)
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is not set: the host doctor would check the pod's pid namespace, not the node's")
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the selector's %s=%s is not on the pod template", k, v)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	hostPathOf := func(c corev1.Container, mountPath string) (string, bool) {
		for _, m := range c.VolumeMounts {
			if m.MountPath == mountPath {
				if hp := volumes[m.Name].HostPath; hp != nil {
					return hp.Path, m.ReadOnly
				}
			}
		}
		return "", false
	}
	want := map[string]struct {
		target string
		file   string
		// mounts are the node's directories the container reads.
		mounts []string
	}{
		"host-doctor":  {"host", "kata_cr_host.prom", []string{"/boot", "/lib/modules"}},
		"guest-doctor": {"guest", "kata_cr_guest.prom", []string{"/opt/kata"}},
	}
	if len(pod.Containers) != len(want) {
		t.Fatalf("%d containers, want %d", len(pod.Containers), len(want))
	}
	for _, c := range pod.Containers {
		w, ok := want[c.Name]
		if !ok {
			t.Errorf("unexpected container %s", c.Name)
			continue
		}
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			t.Errorf("%s is not privileged", c.Name)
		}
		if len(c.Command) != 4 || c.Command[0] != "/bin/sh" || !strings.Contains(c.Command[2], `"$@"`) {
			t.Errorf("%s: command %q: want the loop that runs its args", c.Name, c.Command)
		}
		if len(c.Args) < 2 || c.Args[0] != "kata-cr" {
			t.Fatalf("%s: args %q: want kata-cr's argv", c.Name, c.Args)
		}
		o := parseKataCRArgs(t, c.Args[1:])
		if o["command"] != "doctor" || o["output"] != "prometheus" || o["target"] != w.target {
			t.Errorf("%s: kata-cr %s: command %s, -o %s, --target %s; want doctor, prometheus, %s",
				c.Name, strings.Join(c.Args[1:], " "), o["command"], o["output"], o["target"], w.target)
		}
		if o["output-file"] != filepath.Join(textfileDir, w.file) {
			t.Errorf("%s: --output-file %s, want %s", c.Name, o["output-file"], filepath.Join(textfileDir, w.file))
		}
		if hp, ro := hostPathOf(c, filepath.Dir(o["output-file"])); hp != textfileDir || ro {
			t.Errorf("%s: %s is not the node's %s, writable (hostPath %q, read-only %v)", c.Name, filepath.Dir(o["output-file"]), textfileDir, hp, ro)
		}
		for _, m := range w.mounts {
			if hp, ro := hostPathOf(c, m); hp != m || !ro {
				t.Errorf("%s: %s is not the node's, read-only (hostPath %q, read-only %v)", c.Name, m, hp, ro)
			}
		}
		if c.Name == "guest-doctor" && !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "KATA_CR_SRC" && e.Value != "" }) {
			t.Errorf("%s: no KATA_CR_SRC: the guest agent is built from the source tree", c.Name)
		}
		if c.Name == "host-doctor" {
			args := slices.Clone(c.Args[1:])
			out := filepath.Join(t.TempDir(), w.file)
			args[slices.Index(args, "--output-file")+1] = out
			code, _, stderr := runKataCR(args...)
			if code != ExitOK && code != ExitCheckFailed {
				t.Fatalf("kata-cr %s: exit %d: %s", strings.Join(args, " "), code, stderr)
			}
			metrics, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			promtool.Check(t, metrics)
		}
	}
}

// parseKataCRArgs parses args as kata-cr's command line, without running
// it, and returns the subcommand's name and the values of the flags that
// matter here.
func parseKataCRArgs(t *testing.T, args []string) map[string]string {
	t.Helper()
	root := newRootCmd(&Deps{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, IsTerminal: func(io.Writer) bool { return false }, Getenv: func(string) string { return "" }})
	sub, rest, err := root.Find(args)
	if err != nil {
		t.Fatalf("kata-cr %s: %v", strings.Join(args, " "), err)
	}
	if err := sub.ParseFlags(rest); err != nil {
		t.Fatalf("kata-cr %s: %v", strings.Join(args, " "), err)
	}
	if err := sub.ValidateArgs(sub.Flags().Args()); err != nil {
		t.Fatalf("kata-cr %s: %v", strings.Join(args, " "), err)
	}
	o := map[string]string{"command": sub.Name()}
	for _, name := range []string{"output", "output-file", "target"} {
		f := sub.Flags().Lookup(name)
		if f == nil {
			t.Fatalf("kata-cr %s has no --%s", sub.Name(), name)
		}
		o[name] = f.Value.String()
	}
	return o
}
