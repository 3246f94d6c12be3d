package corpus

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/reports"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func ptr[T any](v T) *T { return &v }

// report builds an entry's report: the prediction before the fixes
// (plainOK), the plan (planOK) and what CRIU did.
func report(plainOK, planOK bool, blockers []string, cp reports.Checkpoint) *reports.Report {
	return &reports.Report{
		Prediction: &reports.Prediction{DumpWillSucceed: plainOK, WithOptions: planOK, BlockedBy: blockers},
		Plan:       &reports.Prediction{DumpWillSucceed: planOK, WithOptions: planOK},
		Checkpoint: &cp,
	}
}

var (
	bindProofs = []reports.Proof{{Finding: "mount.external-bind", Without: "--external mnt[/etc/hosts]:hosts", Failed: true, Signature: "mnt-no-root", Confirmed: true}}
	binds      = []string{"mount.external-bind"}
)

func TestJudge(t *testing.T) {
	for _, tt := range []struct {
		name    string
		r       *reports.Report
		verdict string
		// disagree and unknown count what Judge must find.
		disagree, unknown int
	}{
		{"restored", report(false, true, binds, reports.Checkpoint{
			Plain: &reports.RawDump{Signature: "mnt-no-root", PredictedBy: binds}, Proofs: bindProofs,
			PredictionMatched: ptr(true), DumpOK: true, RestoreOK: true, Verified: true}), VerdictRestored, 0, 0},
		{"unfixable, left running", report(false, false, []string{"process.nested-pidns"}, reports.Checkpoint{
			Plain:             &reports.RawDump{Signature: "nested-pidns", PredictedBy: []string{"process.nested-pidns"}},
			PredictionMatched: ptr(true), FailureSignature: "nested-pidns", PredictedBy: []string{"process.nested-pidns"},
			WorkloadRunning: ptr(true)}), VerdictUnfixable, 0, 0},
		{"refused hang", report(false, false, []string{"process.vfork"}, reports.Checkpoint{
			Plain:    &reports.RawDump{Signature: "seize-timeout", PredictedBy: []string{"process.vfork"}},
			Refusals: []reports.Refusal{{Step: "dump", BlockedBy: []string{"process.vfork"}}}, WorkloadRunning: ptr(true),
			Proofs: []reports.Proof{{Finding: "process.vfork", Failed: true, Hung: true, Confirmed: true}}}), VerdictUnfixable, 0, 0},
		{"plain succeeded against the prediction", report(false, true, binds, reports.Checkpoint{
			Plain: &reports.RawDump{OK: true}, PredictionMatched: ptr(true), DumpOK: true, RestoreOK: true, Verified: true}), VerdictWrong, 1, 0},
		{"plain failed on an unpredicted cause", report(false, true, binds, reports.Checkpoint{
			Plain:             &reports.RawDump{Signature: "tcp-established"},
			PredictionMatched: ptr(true), DumpOK: true, RestoreOK: true, Verified: true}), VerdictWrong, 1, 0},
		{"plain failed on an unknown cause", report(false, true, binds, reports.Checkpoint{
			Plain:             &reports.RawDump{Unexplained: true},
			PredictionMatched: ptr(true), DumpOK: true, RestoreOK: true, Verified: true}), VerdictWrong, 0, 1},
		{"proof not confirmed", report(false, true, binds, reports.Checkpoint{
			Plain:  &reports.RawDump{Signature: "mnt-no-root", PredictedBy: binds},
			Proofs: []reports.Proof{{Finding: "process.tcp", Without: "--tcp-established", Failed: false}}, PredictionMatched: ptr(true),
			DumpOK: true, RestoreOK: true, Verified: true}), VerdictWrong, 1, 0},
		{"plan predicted to work, dump failed", report(false, true, binds, reports.Checkpoint{
			Plain:             &reports.RawDump{Signature: "mnt-no-root", PredictedBy: binds},
			PredictionMatched: ptr(false), FailureSignature: "udp-cork", WorkloadRunning: ptr(true)}), VerdictWrong, 1, 0},
		{"dumped but not verified", report(false, true, binds, reports.Checkpoint{
			Plain:             &reports.RawDump{Signature: "mnt-no-root", PredictedBy: binds},
			PredictionMatched: ptr(true), DumpOK: true, RestoreOK: true, Error: "the counter started afresh"}), VerdictWrong, 1, 0},
		{"workload lost after the failed dump", report(false, false, []string{"process.udp-cork"}, reports.Checkpoint{
			Plain:             &reports.RawDump{Signature: "udp-cork", PredictedBy: []string{"process.udp-cork"}},
			PredictionMatched: ptr(true), FailureSignature: "udp-cork", PredictedBy: []string{"process.udp-cork"},
			WorkloadRunning: ptr(false)}), VerdictWrong, 1, 0},
		{"no report", nil, VerdictError, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := Judge(Entry{Name: "e", Workload: "w"}, tt.r, "the job failed")
			if res.Verdict != tt.verdict || len(res.Disagreements) != tt.disagree || len(res.Unknown) != tt.unknown {
				t.Errorf("verdict %s, disagreements %q, unknown %q: want %s, %d, %d", res.Verdict, res.Disagreements, res.Unknown, tt.verdict, tt.disagree, tt.unknown)
			}
		})
	}
}

// TestWriteMarkdown: the truth table of a cell, golden.
func TestWriteMarkdown(t *testing.T) {
	res := &Result{SchemaVersion: SchemaVersion, Cell: Cell{KernelRelease: "6.1.0-test", CRIUVersion: "3.17.1"}, CheckpointSeconds: 12, RestoreSeconds: 5}
	tcp := report(false, true, []string{"mount.external-bind", "process.tcp"}, reports.Checkpoint{
		Plain: &reports.RawDump{Signature: "tcp-established", PredictedBy: []string{"process.tcp"}},
		Proofs: append([]reports.Proof{{Finding: "process.tcp", Without: "--tcp-established", Failed: true, Signature: "tcp-established", Confirmed: true}},
			bindProofs...),
		PredictionMatched: ptr(true), DumpOK: true, RestoreOK: true, Verified: true, Verification: "carried on"})
	tcp.Plan.CRIU.TCPEstablished = true
	// A masked directory declared external is a speed-up, not a fix: the
	// table leaves it out (the golden files do not name it).
	tcp.Plan.CRIU.ExternalMounts = append(tcp.Plan.CRIU.ExternalMounts, criuopt.Mount{Key: "masked-proc-acpi", Path: "/proc/acpi"})
	res.add(Judge(Entry{Name: "tcp-established", Workload: "tcp-established"}, tcp, ""))
	res.add(Judge(Entry{Name: "vfork", Workload: "vfork"}, report(false, false, []string{"process.vfork"}, reports.Checkpoint{
		Plain:    &reports.RawDump{Signature: "seize-timeout", PredictedBy: []string{"process.vfork"}},
		Refusals: []reports.Refusal{{Step: "dump", BlockedBy: []string{"process.vfork"}}}, WorkloadRunning: ptr(true),
		Proofs: []reports.Proof{{Finding: "process.vfork", Without: "the refusal to dump", Failed: true, Signature: "seize-timeout", Confirmed: true},
			{Finding: "process.vfork", Without: "the refusal to dump", Failed: true, Hung: true, Confirmed: true}}}), ""))
	res.add(Judge(Entry{Name: "broken", Workload: "broken"}, nil, "the workload did not start"))
	var md, text bytes.Buffer
	if err := WriteMarkdown(&md, res); err != nil {
		t.Fatal(err)
	}
	if err := WriteText(&text, res); err != nil {
		t.Fatal(err)
	}
	golden(t, "cell.md", md.Bytes())
	golden(t, "cell.txt", text.Bytes())
	if res.OK() {
		t.Error("a cell with an entry not judged is OK")
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test ./corpus -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file:\n%s", name, got)
	}
}

// TestEntries: every entry names a registered workload, once.
func TestEntries(t *testing.T) {
	if len(Entries) < 30 {
		t.Errorf("%d corpus entries, want at least 30", len(Entries))
	}
	names := map[string]bool{}
	for _, e := range Entries {
		if names[e.Name] || e.Covers == "" {
			t.Errorf("entry %q: listed twice or without what it covers", e.Name)
		}
		names[e.Name] = true
	}
	if _, err := Select([]string{"nope"}); err == nil {
		t.Error("Select accepted an unknown entry")
	}
	got, err := Select([]string{"redis", "counter"})
	if err != nil || !slices.EqualFunc(got, []Entry{Entries[slices.IndexFunc(Entries, func(e Entry) bool { return e.Name == "counter" })], Entries[slices.IndexFunc(Entries, func(e Entry) bool { return e.Name == "redis" })]}, func(a, b Entry) bool { return a.Name == b.Name }) {
		t.Errorf("Select = %v, %v: want counter then redis, in the corpus's order", got, err)
	}
}
