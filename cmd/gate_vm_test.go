package cmd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/corpus"
	"github.com/kata-cr/kata-cr/gate"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// gateMatrix writes a matrix of two cells, stable (the 6.1 kernel with the
// host's CRIU) and candidate (candidateKernel with Debian bookworm's CRIU
// 3.17.1), each running the corpus's counter and zombie.
func gateMatrix(t *testing.T, candidateKernel string) string {
	t.Helper()
	body := `[options]
time_limit = "8m"

[[kernel]]
name = "stable"
debian = "6.1"

[[kernel]]
name = "candidate"
debian = "` + candidateKernel + `"

[[criu]]
host = true

[[criu]]
suite = "bookworm"

[[workload]]
corpus = "counter"

[[workload]]
corpus = "zombie"

[[cell]]
name = "stable"
kernel = "stable"
criu = "host"

[[cell]]
name = "candidate"
kernel = "candidate"
criu = "bookworm"
`
	if candidateKernel == "6.1" {
		// One kernel twice is a duplicate: the baseline's candidate is
		// the stable kernel under another name only in its cell.
		body = strings.Replace(body, "[[kernel]]\nname = \"candidate\"\ndebian = \"6.1\"\n\n", "", 1)
		body = strings.Replace(body, "kernel = \"candidate\"", "kernel = \"stable\"", 1)
	}
	p := filepath.Join(t.TempDir(), "gate.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func gateResult(t *testing.T, stdout, stderr string, code int) *gate.Result {
	t.Helper()
	var r gate.Result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("exit %d, no JSON result: %v\nstderr: %s", code, err, lastLines(stderr, 30))
	}
	for _, c := range r.Cells {
		t.Logf("cell %s: %s, kernel %s, CRIU %s, predictions %s, %.0fs: %s", c.Name, c.Status, c.KernelRelease, c.CRIUVersion, c.Accuracy, c.Seconds, c.Error)
		for _, w := range c.Workloads {
			if w.Corpus != nil {
				t.Logf("  %s: %s %s; plain predicted %s / CRIU %s (%s); planned predicted %s / CRIU %s (%s); dump %.2fs restore %.2fs",
					w.Name, w.Status, w.Verdict, w.Corpus.Plain.Predicted, w.Corpus.Plain.CRIU, w.Corpus.Plain.Signature,
					w.Corpus.Planned.Predicted, w.Corpus.Planned.CRIU, w.Corpus.Planned.Signature, w.DumpSeconds, w.RestoreSeconds)
			}
		}
	}
	return &r
}

// TestGateBaselineRegression makes a baseline from a passing matrix (6.1
// with CRIU 3.17.1 twice), then moves the candidate cell to the 7.3
// kernel, where CRIU before 4.1 fails on the vDSO: the gate exits 3 naming
// the candidate's counter, which restored before and does not now, while
// the stable cell passes unchanged.
func TestGateBaselineRegression(t *testing.T) {
	needGuest(t, "6.1")
	needGuest(t, "7.3")
	tmp := t.TempDir()
	base := filepath.Join(tmp, "baseline.json")
	code, stdout, stderr := runKataCR("gate", "--matrix", gateMatrix(t, "6.1"), "-j", "1", "-o", "json",
		"--write-baseline", base, "--dir", filepath.Join(tmp, "base"))
	r := gateResult(t, stdout, stderr, code)
	if code != ExitOK {
		t.Fatalf("the baseline's matrix does not pass: exit %d\n%s", code, lastLines(stderr, 20))
	}
	for _, c := range r.Cells {
		if c.Status != gate.Pass || c.Accuracy.Agreed != c.Accuracy.Predictions {
			t.Errorf("baseline cell %s: %s, predictions %s", c.Name, c.Status, c.Accuracy)
		}
	}
	junitFile := filepath.Join(tmp, "gate.xml")
	code, stdout, stderr = runKataCR("gate", "--matrix", gateMatrix(t, "7.3"), "-j", "1", "-o", "json",
		"--baseline", base, "--junit", junitFile, "--dir", filepath.Join(tmp, "regress"))
	r = gateResult(t, stdout, stderr, code)
	if code != ExitCheckFailed {
		t.Errorf("exit %d, want %d (a regression)", code, ExitCheckFailed)
	}
	if r.Baseline == nil {
		t.Fatal("no comparison with the baseline")
	}
	named := false
	for _, ch := range r.Baseline.Regressions {
		t.Logf("regression: %s (%s)", ch, ch.Kind)
		if ch.Cell != "candidate" {
			t.Errorf("a regression outside the candidate cell: %s", ch)
		}
		if ch.Cell == "candidate" && ch.Workload == "counter" && ch.Kind == gate.ChangeRestore {
			named = true
		}
	}
	if !named {
		t.Errorf("the candidate's counter is not named as no longer restored: %+v", r.Baseline.Regressions)
	}
	for _, c := range r.Cells {
		switch c.Name {
		case "stable":
			if c.Status != gate.Pass {
				t.Errorf("the unchanged cell: %s", c.Status)
			}
		case "candidate":
			if !strings.HasPrefix(c.KernelRelease, "7.3") || c.CRIUVersion != "3.17.1" {
				t.Errorf("candidate ran kernel %s, CRIU %s", c.KernelRelease, c.CRIUVersion)
			}
			for _, w := range c.Workloads {
				// CRIU is the judge: on 7.3, CRIU 3.17.1 fails every dump,
				// as kata-cr predicts.
				if w.Name == "counter" && (w.Verdict != corpus.VerdictUnfixable || w.Corpus == nil || w.Corpus.Plain.CRIU != "fail" || w.Corpus.Plain.Predicted != "fail") {
					t.Errorf("candidate counter: %s, %+v", w.Verdict, w.Corpus)
				}
			}
		}
	}
	if _, err := os.Stat(junitFile); err != nil {
		t.Errorf("--junit: %v", err)
	}
}

// TestGateInterrupted: Ctrl-C while a cell's guest runs stops the gate
// (exit 1, saying so), skips the cells not started, and leaves no qemu.
func TestGateInterrupted(t *testing.T) {
	needGuest(t, "6.1")
	tmp, err := os.MkdirTemp("", "kcrg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	var stdout strings.Builder
	cmd, rest := startKataCRArgs(t, tmp, "agent up", &stdout, "gate", "--matrix", gateMatrix(t, "6.1"), "-j", "1", "-v", "-o", "json", "--dir", filepath.Join(t.TempDir(), "gate"))
	if len(qemuLeft(tmp)) == 0 {
		t.Fatal("no qemu found by the marker")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the gate did not end within a minute of SIGINT")
	}
	errText := <-rest
	noQemuLeft(t, tmp)
	if code := cmd.ProcessState.ExitCode(); code != ExitToolError || !strings.Contains(errText, "interrupted") {
		t.Errorf("exit %d, stderr %s: want %d saying it was interrupted", code, lastLines(errText, 5), ExitToolError)
	}
	var r gate.Result
	if err := json.Unmarshal([]byte(stdout.String()), &r); err != nil {
		t.Fatalf("no JSON result after the interrupt: %v", err)
	}
	for _, c := range r.Cells {
		if c.Status != gate.Skipped {
			t.Errorf("cell %s: %s (%s), want skipped", c.Name, c.Status, c.Error)
		}
	}
}

// BenchmarkGate times the default gate (the whole corpus in the corpus's
// three cells) with one cell at a time and with two, and reports how it
// scales: the -j 1 time over the -j 2 time (make bench runs it once:
// -benchtime 1x).
func BenchmarkGate(b *testing.B) {
	needGuest(b, "6.1")
	needGuest(b, "7.3")
	var secs [2]float64
	for i := 0; i < b.N; i++ {
		for k, j := range []string{"1", "2"} {
			code, stdout, stderr := runKataCR("gate", "-j", j, "-o", "json", "--dir", filepath.Join(b.TempDir(), "gate"))
			var r gate.Result
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				b.Fatalf("exit %d, no JSON result: %v\n%s", code, err, lastLines(stderr, 20))
			}
			if code != ExitOK {
				b.Errorf("the default gate with -j %s: exit %d", j, code)
			}
			secs[k] += r.Seconds
			for _, c := range r.Cells {
				b.Logf("-j %s: %s", j, gate.CellLine(c))
				for _, w := range c.Workloads {
					if w.Status != gate.Pass {
						b.Logf("-j %s: %s: %s %s (%s): %s", j, c.Name, w.Name, w.Status, w.Verdict, w.Message)
					}
				}
			}
			b.Logf("-j %s: the default gate took %.0fs", j, r.Seconds)
		}
	}
	n := float64(b.N)
	b.Logf("the default gate: %.0fs with -j 1, %.0fs with -j 2: %.2fx faster with two cells at a time", secs[0]/n, secs[1]/n, secs[0]/secs[1])
	b.ReportMetric(secs[0]/n, "gate-j1-s")
	b.ReportMetric(secs[1]/n, "gate-j2-s")
	b.ReportMetric(secs[0]/secs[1], "j2-speedup-x")
}

// TestGateBundles: OCI bundles as a matrix's workloads. Two bundles whose
// rootfs is the python3 tree, each with its own virtio-9p share, run an
// HTTP counter kept only in memory; each bundle's own probe fetches the
// counter before the dump and in the restored container, and the counter
// must carry on past its value. CRIU judges both as for any workload.
func TestGateBundles(t *testing.T) {
	needGuest(t, "6.1")
	tree := pythonTree(t)
	tmp := t.TempDir()
	body := "[options]\ntime_limit = \"10m\"\n\n[[kernel]]\ndebian = \"6.1\"\n\n[[criu]]\nhost = true\n"
	for _, name := range []string{"web-a", "web-b"} {
		spec := container.GenerateSpec(name, []string{"python3", "-c", httpCounter})
		spec.Root.Path = tree
		data, err := json.MarshalIndent(spec, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(tmp, name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, container.BundleConfig), data, 0o600); err != nil {
			t.Fatal(err)
		}
		body += fmt.Sprintf("\n[[workload]]\nbundle = %q\nverify_exec = [%s]\n", dir, fetchCounter)
	}
	matrix := filepath.Join(tmp, "gate.toml")
	if err := os.WriteFile(matrix, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runKataCR("gate", "--matrix", matrix, "-o", "json", "--dir", filepath.Join(tmp, "out"))
	r := gateResult(t, stdout, stderr, code)
	if code != ExitOK || len(r.Cells) != 1 {
		t.Fatalf("exit %d, %d cells: want 0 and 1\n%s", code, len(r.Cells), lastLines(stderr, 30))
	}
	c := r.Cells[0]
	if c.Status != gate.Pass || len(c.Workloads) != 2 || c.Accuracy.Agreed != c.Accuracy.Predictions {
		t.Fatalf("cell %s, %d workloads, predictions %s", c.Status, len(c.Workloads), c.Accuracy)
	}
	for _, w := range c.Workloads {
		if w.Expect != gate.ExpectRestore || w.Status != gate.Pass || w.Verdict != corpus.VerdictRestored {
			t.Errorf("%s: expect %s, %s %s: %s", w.Name, w.Expect, w.Status, w.Verdict, w.Message)
		}
		data, err := os.ReadFile(filepath.Join(c.Dir, w.Name+".report.json"))
		if err != nil {
			t.Fatal(err)
		}
		var rep reports.Report
		if err := json.Unmarshal(data, &rep); err != nil || rep.Checkpoint == nil {
			t.Fatalf("%s: the workload's report: %v", w.Name, err)
		}
		counters := map[string]int{}
		for _, p := range rep.Checkpoint.Probes {
			n, err := strconv.Atoi(strings.TrimSpace(p.Output))
			if !p.Passed() || err != nil {
				t.Errorf("%s: probe %s: exit %d, output %q", w.Name, p.Phase, p.ExitCode, p.Output)
			}
			counters[p.Phase] = n
		}
		t.Logf("%s: counter %d before the dump, %d after the restore", w.Name, counters[reports.ProbeBefore], counters[reports.ProbeAfter])
		if counters[reports.ProbeBefore] < 1 || counters[reports.ProbeAfter] <= counters[reports.ProbeBefore] {
			t.Errorf("%s: counter %d before, %d after: want it to carry on", w.Name, counters[reports.ProbeBefore], counters[reports.ProbeAfter])
		}
		if ci := rep.Checkpoint.Container; ci == nil || ci.Spec != filepath.Join(tmp, w.Name) {
			t.Errorf("%s: the container's spec is not the bundle's: %+v", w.Name, ci)
		}
	}
}
