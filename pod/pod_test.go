package pod

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/kata-cr/kata-cr/internal/tomlfile"
	_ "github.com/kata-cr/kata-cr/testload" // the pod workloads
)

func TestLoadSidecar(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "sidecar.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "sidecar" || !p.ShareIPC || len(p.Volumes) != 1 || len(p.Containers) != 2 {
		t.Fatalf("pod %+v", p)
	}
	c, ok := p.Lookup("client")
	if !ok || c.Workload != "pod-client" || c.Line != 12 || len(c.Mounts) != 1 || c.Mounts[0] != (Mount{Volume: "shared", Path: "/run/pod"}) || len(c.VerifyExec) != 1 {
		t.Errorf("client %+v", c)
	}
}

// TestLoadBad: every mistake is one *tomlfile.Error naming the file, the
// line and the key.
func TestLoadBad(t *testing.T) {
	for _, tc := range []struct {
		file string
		line int
		key  string
		msg  string
	}{
		{"unknown-key", 5, "container.image", "unknown key: the keys in [[container]] are name, workload, command, bundle, volumes, verify_exec"},
		{"no-containers", 0, "", "no containers: add [[container]] tables"},
		{"bad-name", 1, "name", `"P_1" is not a pod name: lower-case letters, digits and '-', at most 63`},
		{"both", 5, "container.command", "give either workload or command, not both"},
		{"neither", 3, "container", `container "a" has neither workload nor command`},
		{"unknown-workload", 4, "container.workload", `unknown workload "nope": known workloads are `},
		{"dup-container", 6, "container.name", `container "a" is declared twice (first at line 2)`},
		{"volume-undeclared", 5, "container.volumes", `"data:/run/pod": no [[volume]] is named "data"`},
		{"volume-syntax", 7, "container.volumes", `"data": want NAME:/path`},
		{"volume-relative", 7, "container.volumes", `"data:run/pod": the mount point must be a clean absolute path other than /`},
		{"volume-proc", 7, "container.volumes", `"data:/proc/x": /proc belongs to the runtime`},
		{"volume-unused", 3, "volume.name", `volume "data" is mounted by no container`},
		{"bundle", 4, "container.bundle", "a pod's container from an OCI bundle is not supported yet: give a workload or a command"},
		{"wrong-type", 2, "share_ipc", ""},
		{"probe-empty", 5, "container.verify_exec", "a probe is an argv"},
		{"syntax", 1, "name", "strings cannot contain newlines"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tc.file+".toml")
			_, err := Load(path)
			var te *tomlfile.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v is a %T, want a *tomlfile.Error", err, err)
			}
			if te.File != path || te.Line != tc.line || te.Key != tc.key || len(te.Msg) < len(tc.msg) || te.Msg[:len(tc.msg)] != tc.msg {
				t.Errorf("got %+v\nwant line %d key %q msg %q...", te, tc.line, tc.key, tc.msg)
			}
		})
	}
}
