package cmd

import (
	"strings"
	"testing"
)

// TestPodCheckpointBadInput: a bad pod file or flag is one line and exit
// 2, before anything boots.
func TestPodCheckpointBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a bad pod file", []string{"../pod/testdata/bad/volume-undeclared.toml"}, `volume-undeclared.toml:5: container.volumes: "data:/run/pod": no [[volume]] is named "data"`},
		{"a missing pod file", []string{"../pod/testdata/none.toml"}, "none.toml: cannot read the pod"},
		{"no pod file", nil, "accepts 1 arg(s)"},
		{"an unknown container", []string{"../pod/testdata/sidecar.toml", "--container", "db"}, "--container db: pod sidecar has no such container (it has server, client)"},
		{"--prove without --auto-fix", []string{"../pod/testdata/sidecar.toml", "--container", "client", "--prove"}, "--prove proves the fixes of --auto-fix"},
		{"--prove for the whole pod", []string{"../pod/testdata/sidecar.toml", "--auto-fix", "--prove"}, "--prove judges one container's dump"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runKataCR(append([]string{"pod", "checkpoint"}, tc.args...)...)
			if code != 2 || stdout != "" || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q: want exit 2 and one line with %q", code, stdout, stderr, tc.want)
			}
		})
	}
}
