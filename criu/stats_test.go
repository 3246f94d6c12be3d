package criu

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestReadDumpStatsGolden decodes stats-dump files CRIU 3.17.1 wrote in
// kata-cr's guest against their goldens.
func TestReadDumpStatsGolden(t *testing.T) {
	tests := []struct {
		name, dir string
		wantErr   string
	}{
		// A dump of the seccomp corpus entry (6.8 MiB of pages).
		{name: "seccomp", dir: "testdata/stats"},
		{name: "missing", dir: "testdata/no-such-dir", wantErr: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadDumpStats(tc.dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Freeze() < s.FrozenTime || s.PagesWritten == 0 || s.PagesScanned < s.PagesWritten {
				t.Errorf("implausible stats %+v", s)
			}
			got, err := json.MarshalIndent(s, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join(tc.dir, "stats-dump.golden.json")
			if *updateGolden {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test ./criu -run TestReadDumpStatsGolden -update writes it)", err)
			}
			if string(want) != string(got) {
				t.Errorf("stats:\n%s\nwant (%s):\n%s", got, golden, want)
			}
		})
	}
}
