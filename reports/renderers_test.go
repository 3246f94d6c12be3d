package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fatih/color"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/internal/junit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func boolPtr(b bool) *bool { return &b }

// richReport has every part a report can have, every status, and text that
// Markdown and XML must escape.
func richReport() *Report {
	r := New("doctor", "v1.2.3")
	r.Target = Target{
		Kind: "guest", KernelRelease: "6.1.0-56-amd64", Arch: "x86_64", CRIUVersion: "3.17.1",
		Accelerator: "tcg", AcceleratorReason: "KVM probe: the guest did not answer within 5s",
		Sources: []string{"/boot/config-6.1.0-56-amd64", "pid 206"},
	}
	r.Findings = []Finding{
		{ID: "kernel.CONFIG_CHECKPOINT_RESTORE", Category: "kernel", Level: Required, Status: Pass,
			Summary: "CONFIG_CHECKPOINT_RESTORE is enabled", Evidence: []string{"CONFIG_CHECKPOINT_RESTORE=y"}},
		{ID: "process.session-leader", Category: "process", Level: Required, Status: Fail,
			Summary:  "pid 1 (sh) is in a session whose leader is outside its pid namespace",
			Evidence: []string{"NSsid: 0", "NSpid: 206 1"},
			Fix: &Fix{Description: "make the container init a session leader: wrap the entrypoint in setsid",
				AutoFixable: true, Fixer: "setsid-restart"}},
		{ID: "kernel.CONFIG_MEM_SOFT_DIRTY", Category: "kernel", Level: Recommended, Status: Warn,
			Summary: "CONFIG_MEM_SOFT_DIRTY is missing: no pre-dump | *iterative* migration",
			Fix:     &Fix{Description: "add CONFIG_MEM_SOFT_DIRTY=y to a fragment <kata>"}},
		{ID: "process.file-locks", Category: "process", Level: Required, Status: Skip,
			Summary: "file locks", Reason: "needs root: run kata-cr as root"},
		{ID: "mount.external", Category: "mount", Level: Required, Status: Fail,
			Summary:  "/etc/hosts is bind-mounted from outside the container root",
			Evidence: []string{"37 36 0:21 /sandbox/hosts /etc/hosts rw - tmpfs tmpfs rw"},
			Fix: &Fix{Description: "declare the bind mount external",
				CRIU:        criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}}},
				Restore:     criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/sandbox/hosts"}}},
				AutoFixable: true, Fixer: "external-mounts"}},
		{ID: "criu.check", Category: "criu", Level: Required, Status: Error,
			Summary: "criu check", Reason: "criu check could not run: exec: \"criu\": executable file not found in $PATH"},
		{ID: "process.session-leader", Category: "process", Level: Required, Status: Fail,
			Summary: "pid 2 (sleep) is in a session whose leader is outside its pid namespace",
			Fix:     &Fix{Description: "make the container init a session leader: wrap the entrypoint in setsid"}},
		{ID: "kernel.CONFIG_USERFAULTFD", Category: "kernel", Level: Optional, Status: Pass,
			Summary: "CONFIG_USERFAULTFD is enabled"},
	}
	r.Prediction = &Prediction{
		DumpWillSucceed: false, WithOptions: false,
		Reasons: []string{
			"process.session-leader: pid 1 (sh) is in a session whose leader is outside its pid namespace",
			"mount.external: /etc/hosts is bind-mounted from outside the container root",
		},
		CRIU:    criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/etc/hosts"}}},
		Restore: criuopt.Set{ExternalMounts: []criuopt.Mount{{Key: "hosts", Path: "/sandbox/hosts"}}},
	}
	r.Actions = []Action{
		{Fixer: "load-modules", Finding: "kernel.modules", Applied: true, Summary: "loaded unix_diag, inet_diag",
			Command: []string{"modprobe", "-a", "unix_diag", "inet_diag"}},
		{Fixer: "setsid-restart", Finding: "process.session-leader", Summary: "would restart the workload under setsid"},
		{Fixer: "lo-up", Finding: "net.loopback", Summary: "bring lo up", Error: "netlink: operation not permitted"},
	}
	r.Explanations = []Explanation{
		{Source: "dump.log", Line: 214, Signature: "session-leader-outside-pidns", Known: true,
			Cause: "Process 206 belongs to a session whose leader lives outside the container's pid namespace.",
			Fix:   "Make the container init a session leader.",
			Quote: []string{"(00.295512) sid=0 pgid=0 pid=1",
				"(00.295595) Error (criu/cr-dump.c:1618): A session leader of 206(1) is outside of its pid namespace"}},
		{Source: "dump.log", Line: 300, Signature: "unknown", Known: false,
			Cause: "Unknown error, not in kata-cr's signature table: something <odd> & `new`",
			Quote: []string{"```", "(00.300000) Error (criu/x.c:1): something <odd> & `new`"}},
	}
	r.Checkpoint = &Checkpoint{
		Workload: "counter", Command: []string{"/bin/counter", "--every", "100ms"}, Stage: "done",
		DumpOK: true, DumpOptions: []string{"--external", "mnt[/etc/hosts]:hosts"}, DumpSeconds: 0.5234,
		ImagesDir: "/var/lib/kata-cr/images/counter", ImageBytes: 67_108_864 + 12_345,
		RestoreRan: true, RestoreOK: true, RestoreOptions: []string{"--root", "/run/rootfs"}, RestoreSeconds: 0.3121,
		RestoredPID: 42, Verified: true, Verification: "counter went on from 17 to 21",
		PredictionMatched: boolPtr(true), WantRestore: true,
	}
	r.Finish()
	return r
}

// failedCheckpointReport is a dump that failed, with the log explained.
func failedCheckpointReport() *Report {
	r := New("checkpoint", "dev")
	r.Target = Target{Kind: "guest", KernelRelease: "6.1.0-56-amd64", Arch: "x86_64", CRIUVersion: "3.17.1", Accelerator: "tcg"}
	r.Prediction = &Prediction{DumpWillSucceed: true, WithOptions: true}
	r.Checkpoint = &Checkpoint{
		Workload: "sleep", Command: []string{"busybox", "sleep", "3600"}, Stage: "dump",
		DumpSeconds: 0.34, WantRestore: true, WorkloadRunning: boolPtr(true), PredictionMatched: boolPtr(false),
		Error: "criu dump failed: see the explanation",
		Explanations: []Explanation{{Source: "dump.log", Line: 214, Signature: "session-leader-outside-pidns", Known: true,
			Cause: "The container init is not a session leader.", Fix: "Wrap the entrypoint in setsid.",
			Quote: []string{"(00.295595) Error (criu/cr-dump.c:1618): A session leader of 206(1) is outside of its pid namespace"}}},
	}
	r.Finish()
	return r
}

func render(t *testing.T, r *Report, opts Options) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, r, opts); err != nil {
		t.Fatalf("render %s: %v", opts.Format, err)
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test ./reports -update to create it): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the output (run go test ./reports -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		golden string
		report func() *Report
		opts   Options
	}{
		{"rich.text.golden", richReport, Options{Format: Text}},
		{"rich.color.golden", richReport, Options{Format: Text, Color: true}},
		{"rich.all.text.golden", richReport, Options{Format: Text, All: true}},
		{"rich.quiet.text.golden", richReport, Options{Format: Text, Quiet: true}},
		{"rich.json.golden", richReport, Options{Format: JSON}},
		{"rich.junit.golden", richReport, Options{Format: JUnit}},
		{"rich.markdown.golden", richReport, Options{Format: Markdown}},
		{"checkpoint-failed.text.golden", failedCheckpointReport, Options{Format: Text}},
		{"checkpoint-failed.junit.golden", failedCheckpointReport, Options{Format: JUnit}},
		{"checkpoint-failed.markdown.golden", failedCheckpointReport, Options{Format: Markdown}},
		{"empty.text.golden", func() *Report { r := New("explain", "dev"); r.Finish(); return r }, Options{Format: Text}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			golden(t, tt.golden, render(t, tt.report(), tt.opts))
		})
	}
}

// TestColor proves that colour follows Options.Color alone, whatever
// fatih/color's global NoColor says.
func TestColor(t *testing.T) {
	saved := color.NoColor
	t.Cleanup(func() { color.NoColor = saved })
	for _, global := range []bool{true, false} {
		color.NoColor = global
		on := render(t, richReport(), Options{Format: Text, Color: true})
		if !strings.Contains(on, "\x1b[") {
			t.Errorf("global NoColor=%v: colour on gave no escape codes", global)
		}
		for _, want := range []string{"✗", "✓", "⚠", "○", "‼"} {
			if !strings.Contains(on, want) {
				t.Errorf("global NoColor=%v: colour on lacks the mark %q", global, want)
			}
		}
		for _, f := range []Format{Text, JSON, JUnit, Markdown} {
			off := render(t, richReport(), Options{Format: f, Color: false})
			if strings.Contains(off, "\x1b") {
				t.Errorf("global NoColor=%v: %s without colour has escape codes", global, f)
			}
		}
	}
}

func TestTextOrder(t *testing.T) {
	out := render(t, richReport(), Options{Format: Text})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != "verdict: a required check failed" {
		t.Errorf("last line = %q, want the verdict", last)
	}
	// Failures first, passes last: Report.Finish sorted them.
	first, lastPass := strings.Index(out, "FAIL  process.session-leader"), strings.LastIndex(out, "PASS  ")
	if first < 0 || lastPass < 0 || first > lastPass {
		t.Errorf("failures are not listed before passes:\n%s", out)
	}
	order := []string{"FAIL  ", "ERROR ", "WARN  ", "SKIP  ", "PASS  ", "prediction:", "actions:",
		"explanations:", "checkpoint:", "target:", "tally:", "verdict:"}
	pos := -1
	for _, s := range order {
		i := strings.Index(out, s)
		if i < pos {
			t.Errorf("%q comes before something that should precede it", s)
		}
		pos = i
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := richReport()
	out := render(t, r, Options{Format: JSON})
	var back Report
	if err := json.Unmarshal([]byte(out), &back); err != nil {
		t.Fatalf("json output does not decode: %v", err)
	}
	if back.SchemaVersion != SchemaVersion {
		t.Errorf("schema_version = %q, want %q", back.SchemaVersion, SchemaVersion)
	}
	if !reflect.DeepEqual(&back, r) {
		t.Errorf("report changed through JSON:\n got %+v\nwant %+v", back, *r)
	}
}

func TestJUnitCounts(t *testing.T) {
	tests := []struct {
		name                             string
		report                           *Report
		tests, failures, errors, skipped int
	}{
		// 8 findings + dump, restore, verify.
		{"rich", richReport(), 11, 3, 1, 1},
		// dump failed; restore and verify did not run.
		{"checkpoint failed", failedCheckpointReport(), 3, 1, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc junit.Suites
			if err := xml.Unmarshal([]byte(render(t, tt.report, Options{Format: JUnit})), &doc); err != nil {
				t.Fatalf("junit output is not XML: %v", err)
			}
			if len(doc.Suites) != 1 {
				t.Fatalf("%d testsuites, want 1", len(doc.Suites))
			}
			s := doc.Suites[0]
			got := [4]int{s.Tests, s.Failures, s.Errors, s.Skipped}
			want := [4]int{tt.tests, tt.failures, tt.errors, tt.skipped}
			if got != want || len(s.Cases) != tt.tests {
				t.Errorf("tests/failures/errors/skipped = %v (%d cases), want %v", got, len(s.Cases), want)
			}
			names := map[string]bool{}
			for _, c := range s.Cases {
				if names[c.Classname+"/"+c.Name] {
					t.Errorf("testcase %s/%s appears twice", c.Classname, c.Name)
				}
				names[c.Classname+"/"+c.Name] = true
			}
		})
	}
}

// TestJUnitControlCharacters feeds log bytes that XML cannot carry.
func TestJUnitControlCharacters(t *testing.T) {
	r := New("explain", "dev")
	r.Findings = []Finding{{ID: "criu-log", Category: "criu-log", Level: Required, Status: Fail,
		Summary: "bad \x1b[31m bytes \x00", Evidence: []string{"esc \x1b[0m nul \x00 ff \xff ]]> end"}}}
	r.Explanations = []Explanation{{Source: "x.log", Line: 1, Signature: "unknown", Quote: []string{"\x07bell ]]>"}}}
	r.Finish()
	var doc junit.Suites
	out := render(t, r, Options{Format: JUnit})
	if err := xml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("junit output is not XML: %v\n%s", err, out)
	}
	if got := doc.Suites[0].Cases[0].Failure.Body; !strings.Contains(got, "]]> end") {
		t.Errorf("failure body lost its text: %q", got)
	}
}

func TestHumanBytes(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 67_108_864: "64.0 MiB", 3 << 30: "3.0 GiB"}
	for n, want := range tests {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMarkdownEscapes(t *testing.T) {
	out := render(t, richReport(), Options{Format: Markdown})
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "| ") {
			continue
		}
		// Every table row has the same number of unescaped pipes as its header.
		cells := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cells != 7 && cells != 6 && cells != 5 {
			t.Errorf("table row has %d cell borders: %s", cells, line)
		}
	}
	// Quoted log lines sit in code blocks; running text must be escaped.
	if strings.Contains(out, "<kata>") || strings.Contains(out, "table: something <odd>") {
		t.Errorf("raw HTML from report text reached the Markdown:\n%s", out)
	}
}

// TestTerminalSafe: an escape sequence quoted from a CRIU log reaches the
// terminal as visible text, in every renderer for people; JSON keeps the
// string as it was (escaped by encoding/json).
func TestTerminalSafe(t *testing.T) {
	evil := "Error (criu/x.c:1): \x1b]0;pwned\x07\x1b[2J\u202eevil\u009b31m"
	r := New("explain", "test")
	r.Findings = []Finding{{ID: "criu-log", Category: "criu", Level: Required, Status: Fail, Summary: evil, Evidence: []string{evil}}}
	r.Explanations = []Explanation{{Signature: "x", Quote: []string{evil}}}
	r.Checkpoint = &Checkpoint{Workload: "w", StateBefore: map[string]string{"k": evil}}
	r.Finish()
	for _, f := range []Format{Text, Markdown, JUnit} {
		var b bytes.Buffer
		if err := Render(&b, r, Options{Format: f}); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if strings.ContainsAny(out, "\x1b\x07\u009b\u202e") {
			t.Errorf("%s output carries control characters: %q", f, out)
		}
		if !strings.Contains(out, `\x1b]0;pwned`) {
			t.Errorf("%s output does not show the escape as text", f)
		}
	}
	if r.Findings[0].Summary != evil {
		t.Error("rendering changed the report")
	}
}

// TestActionsGrouped: a run of actions the same fixer applied is one line
// by default; --all lists each.
func TestActionsGrouped(t *testing.T) {
	r := New("doctor", "test")
	for _, m := range []string{"unix_diag", "inet_diag", "tcp_diag", "udp_diag"} {
		r.Actions = append(r.Actions, Action{Fixer: "load-module", Finding: "kernel." + m, Applied: true, Summary: "loaded module " + m})
	}
	r.Actions = append(r.Actions, Action{Fixer: "loopback-up", Finding: "system.loopback", Applied: true, Summary: "brought lo up"})
	r.Finish()
	count := func(opts Options) int {
		var b bytes.Buffer
		if err := Render(&b, r, opts); err != nil {
			t.Fatal(err)
		}
		return strings.Count(b.String(), "  applied ")
	}
	if n := count(Options{Format: Text}); n != 2 {
		t.Errorf("default text: %d action lines, want 2 (the four load-module actions as one)", n)
	}
	if n := count(Options{Format: Text, All: true}); n != 5 {
		t.Errorf("--all: %d action lines, want 5", n)
	}
}
