package reports

import (
	"strings"
	"testing"
)

func TestTiming(t *testing.T) {
	tests := []struct {
		name       string
		t          Timing
		consistent bool
		line       []string
	}{
		{"restored", Timing{FreezeSeconds: 0.6, DowntimeSeconds: 2.3, EndToEndSeconds: 38, Overlap: true}, true,
			[]string{"freeze 0.60s", "downtime 2.30s", "end to end 38.00s", "restore guest booted during the dump"}},
		{"no restore", Timing{FreezeSeconds: 0.6}, true, []string{"freeze 0.60s"}},
		{"pre-dumps", Timing{FreezeSeconds: 0.2, PreDumps: []PreDump{{}, {}}, PagesWritten: 9, PagesSkippedParent: 10}, true,
			[]string{"after 2 pre-dump(s), 9 pages written, 10 unchanged"}},
		{"freeze longer than the downtime", Timing{FreezeSeconds: 3, DowntimeSeconds: 2, EndToEndSeconds: 38}, false, nil},
		{"downtime longer than the whole", Timing{FreezeSeconds: 1, DowntimeSeconds: 40, EndToEndSeconds: 38}, false, nil},
		{"no freeze", Timing{}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.t.Consistent(); got != tc.consistent {
				t.Errorf("Consistent() = %v, want %v", got, tc.consistent)
			}
			line := tc.t.Line()
			for _, w := range tc.line {
				if !strings.Contains(line, w) {
					t.Errorf("Line() = %q, lacks %q", line, w)
				}
			}
		})
	}
}
