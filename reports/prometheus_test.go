package reports

import (
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/internal/promtool"
)

// promNow is the fixed time of the golden files.
var promNow = time.Date(2026, 12, 1, 16, 26, 14, 0, time.UTC)

// TestPrometheusGolden renders the reports of the other goldens as
// node_exporter textfile metrics and lets promtool lint each.
func TestPrometheusGolden(t *testing.T) {
	for _, tt := range []struct {
		golden string
		report func() *Report
	}{
		{"rich.prom.golden", richReport},
		{"checkpoint-failed.prom.golden", failedCheckpointReport},
		{"empty.prom.golden", func() *Report { r := New("doctor", "dev"); r.Finish(); return r }},
	} {
		t.Run(tt.golden, func(t *testing.T) {
			got := render(t, tt.report(), Options{Format: Prometheus, Now: promNow})
			golden(t, tt.golden, got)
			promtool.Check(t, []byte(got))
		})
	}
}

func TestPrometheusEscapes(t *testing.T) {
	for _, tt := range []struct {
		in, label, help string
	}{
		{`plain`, `plain`, `plain`},
		{`back\slash`, `back\\slash`, `back\\slash`},
		{`say "hi"`, `say \"hi\"`, `say "hi"`},
		{"two\nlines", `two\nlines`, `two\nlines`},
		{"bad \xff byte", "bad \uFFFD byte", "bad \xff byte"},
	} {
		if got := promEscapeLabel(tt.in); got != tt.label {
			t.Errorf("promEscapeLabel(%q) = %q, want %q", tt.in, got, tt.label)
		}
		if got := promEscapeHelp(tt.in); got != tt.help {
			t.Errorf("promEscapeHelp(%q) = %q, want %q", tt.in, got, tt.help)
		}
	}
}

// TestPrometheusHostileLabels: label values from the target (a kernel
// release, a finding ID) that need escaping still make metrics promtool
// accepts, and no two series share their labels.
func TestPrometheusHostileLabels(t *testing.T) {
	r := New("doctor", "dev")
	r.Target = Target{Kind: "host", KernelRelease: "6.1.0-\"odd\"\\\nrelease", CRIUVersion: "3.17.1"}
	r.Findings = []Finding{
		{ID: `kernel."quoted"`, Category: "kernel", Level: Required, Status: Fail},
		{ID: `kernel."quoted"`, Category: "kernel", Level: Required, Status: Fail},
		{ID: `kernel."quoted"`, Category: "kernel", Level: Required, Status: Pass},
	}
	r.Prediction = &Prediction{BlockedBy: []string{`kernel."quoted"`, `kernel."quoted"`}}
	r.Finish()
	got := render(t, r, Options{Format: Prometheus, Now: promNow})
	promtool.Check(t, []byte(got))
	for _, want := range []string{
		`kernel_release="6.1.0-\"odd\"\\\nrelease"`,
		`kata_cr_finding{target="host",id="kernel.\"quoted\"",category="kernel",level="required",status="fail"} 2`,
		`kata_cr_finding{target="host",id="kernel.\"quoted\"",category="kernel",level="required",status="pass"} 1`,
		`kata_cr_prediction_blocked_by{target="host",stage="preflight",finding="kernel.\"quoted\""} 1`,
		`kata_cr_last_run_timestamp_seconds{target="host"} 1796142374`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("metrics lack %s\n%s", want, got)
		}
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		series := l[:strings.LastIndexByte(l, ' ')]
		if seen[series] {
			t.Errorf("series %s twice", series)
		}
		seen[series] = true
	}
}
