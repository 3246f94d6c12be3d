package cmd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/corpus"
)

// truthFile is the committed truth table (make corpus-truth).
const truthFile = "../docs/corpus-truth.md"

// TestCorpus runs the whole corpus in each cell of the truth table, one
// guest for the checkpoints and one for the restores per cell: every
// entry must agree with raw CRIU (no disagreement, no unknown cause) and be
// either restored and verified by its own probe or predicted unfixable and
// left running; and the cell's table must be the committed one, byte for
// byte (make corpus-truth regenerates it when CRIU or kata-cr change).
// The cells run in parallel, as many at once as go test's -parallel
// (GOMAXPROCS): one guest per core, as kata-cr gate runs them.
func TestCorpus(t *testing.T) {
	for _, cell := range corpus.Cells {
		t.Run(cell.Name, func(t *testing.T) {
			needGuest(t, cell.KernelVersion)
			t.Parallel()
			truth, err := os.ReadFile(truthFile)
			if err != nil {
				t.Fatalf("read the truth table: %v (make corpus-truth writes it)", err)
			}
			args := []string{"corpus", "--cell", cell.Name, "-o", "json", "-v", "--dir", filepath.Join(t.TempDir(), "corpus")}
			code, stdout, stderr := runKataCR(args...)
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, "qemu command line") || strings.Contains(l, "corpus") || strings.Contains(l, "DISAGREE") {
					t.Log(l)
				}
			}
			var res corpus.Result
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("kata-cr %s: exit %d, no JSON result: %v\nstderr: %s", strings.Join(args, " "), code, err, lastLines(stderr, 40))
			}
			t.Logf("%s: %+v; checkpoint guest %.0fs, restore guest %.0fs", res.Cell.Name(), res.Counts, res.CheckpointSeconds, res.RestoreSeconds)
			if res.Counts.Entries != len(corpus.Entries) {
				t.Errorf("%d entries judged, want the %d of the corpus", res.Counts.Entries, len(corpus.Entries))
			}
			for _, e := range res.Entries {
				switch {
				case len(e.Disagreements) > 0 || len(e.Unknown) > 0:
					t.Errorf("%s: CRIU disagrees with kata-cr: %q, unknown causes %q", e.Name, e.Disagreements, e.Unknown)
				case e.Verdict == corpus.VerdictRestored && !e.Verified:
					t.Errorf("%s: restored but not verified", e.Name)
				case e.Verdict == corpus.VerdictUnfixable && !e.WorkloadRunning:
					t.Errorf("%s: unfixable but the workload does not run on", e.Name)
				case e.Verdict != corpus.VerdictRestored && e.Verdict != corpus.VerdictUnfixable:
					t.Errorf("%s: %s: %s", e.Name, e.Verdict, e.Detail)
				}
			}
			if code != ExitOK {
				t.Errorf("exit %d, want %d", code, ExitOK)
			}
			var md bytes.Buffer
			if err := corpus.WriteMarkdown(&md, &res); err != nil {
				t.Fatal(err)
			}
			if want := truthSection(string(truth), res.Cell.Name()); want != md.String() {
				t.Errorf("the table of %s differs from %s (run make corpus-truth and review the diff):\n%s\ncommitted:\n%s", cell.Name, truthFile, md.String(), want)
			}
		})
	}
}

// truthSection is the part of the truth table under the heading of cell,
// up to the next heading.
func truthSection(truth, cell string) string {
	head := "### " + cell + "\n"
	i := strings.Index(truth, head)
	if i < 0 {
		return ""
	}
	rest := truth[i+len(head):]
	if j := strings.Index(rest, "\n### "); j >= 0 {
		rest = rest[:j+1]
	}
	return head + rest
}

// TestTruthTableInREADME: the README shows the committed truth table.
func TestTruthTableInREADME(t *testing.T) {
	truth, err := os.ReadFile(truthFile)
	if err != nil {
		t.Fatalf("read the truth table: %v (make corpus-truth writes it)", err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- corpus-truth:begin -->\n", "<!-- corpus-truth:end -->"
	i, j := bytes.Index(readme, []byte(begin)), bytes.Index(readme, []byte(end))
	if i < 0 || j < i {
		t.Fatalf("README.md has no %q ... %q section", begin, end)
	}
	if got := readme[i+len(begin) : j]; !bytes.Equal(got, truth) {
		t.Errorf("README.md's truth table differs from %s: run make corpus-truth", truthFile)
	}
}

// lastLines is the end of s, n lines at most.
func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// BenchmarkCorpus times the whole corpus in each cell (make bench runs it
// once: -benchtime 1x): the checkpoint guest and the restore guest, boots
// included, and the time per entry.
func BenchmarkCorpus(b *testing.B) {
	for _, cell := range corpus.Cells {
		b.Run(cell.Name, func(b *testing.B) {
			needGuest(b, cell.KernelVersion)
			var ck, rs, n float64
			for i := 0; i < b.N; i++ {
				code, stdout, stderr := runKataCR("corpus", "--cell", cell.Name, "-o", "json", "--dir", filepath.Join(b.TempDir(), "corpus"))
				var res corpus.Result
				if err := json.Unmarshal([]byte(stdout), &res); err != nil {
					b.Fatalf("exit %d, no JSON result: %v\n%s", code, err, lastLines(stderr, 20))
				}
				ck += res.CheckpointSeconds
				rs += res.RestoreSeconds
				n += float64(res.Counts.Entries)
			}
			runs := float64(b.N)
			b.ReportMetric(ck/runs, "checkpoint-guest-s")
			b.ReportMetric(rs/runs, "restore-guest-s")
			b.ReportMetric((ck+rs)/runs, "cell-s")
			b.ReportMetric((ck+rs)/n, "s/entry")
		})
	}
}
