package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	junit "github.com/joshdk/go-junit"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"

	"github.com/kata-cr/kata-cr/corpus"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixtureMatrix is two cells of three workloads and a cell whose guest
// did not boot.
func fixtureMatrix() *Matrix {
	ws := []Workload{
		{Name: "counter", Corpus: "counter", Expect: ExpectRestore},
		{Name: "vfork", Corpus: "vfork", Expect: ExpectJudged},
		{Name: "tcp-established", Corpus: "tcp-established", Expect: ExpectJudged},
	}
	opts := Options{AutoFix: true, TimeLimit: DefaultTimeLimit}
	return &Matrix{File: "gate.toml", Cells: []Cell{
		{Name: "6.1/bookworm", Kernel: Kernel{Name: "6.1", Debian: "6.1"}, CRIU: CRIU{Name: "bookworm", Suite: "bookworm"}, Workloads: ws, Options: opts},
		{Name: "7.3/bookworm", Kernel: Kernel{Name: "7.3", Debian: "7.3"}, CRIU: CRIU{Name: "bookworm", Suite: "bookworm"}, Workloads: ws, Options: opts},
		{Name: "mine/forky", Kernel: Kernel{Name: "mine", Image: "/k/vmlinuz"}, CRIU: CRIU{Name: "forky", Suite: "forky"}, Workloads: ws[:1], Options: opts},
	}}
}

func restored(name string, dump, restore float64) corpus.EntryResult {
	return corpus.EntryResult{Name: name, Workload: name, Verdict: corpus.VerdictRestored, Restored: true, Verified: true,
		Plain:   corpus.Outcome{Predicted: "fail", CRIU: "fail", Signature: "session-leader-outside-pidns"},
		Planned: corpus.Outcome{Predicted: "ok", CRIU: "ok"}, Without: []corpus.Without{{Finding: "mount.external-bind", Options: "--external mnt[/etc/hosts]:hosts", Confirmed: true}},
		DumpSeconds: dump, RestoreSeconds: restore}
}

func unfixable(name, blocker, sig string) corpus.EntryResult {
	return corpus.EntryResult{Name: name, Workload: name, Verdict: corpus.VerdictUnfixable, WorkloadRunning: true, Blockers: []string{blocker},
		Plain: corpus.Outcome{Predicted: "fail", CRIU: "fail", Signature: sig}, Planned: corpus.Outcome{Predicted: "fail", CRIU: "fail", Signature: sig}}
}

// fakeRunner answers each cell from a table; a cell missing from it
// fails as a guest would.
func fakeRunner(results map[string]*corpus.Result) CellRunner {
	return func(ctx context.Context, c Cell, dir string) (*corpus.Result, error) {
		r, ok := results[c.Name]
		if !ok {
			return nil, errors.New("run the corpus's checkpoints: qemu failed: the guest did not boot")
		}
		return r, nil
	}
}

func fixtureResults() map[string]*corpus.Result {
	wrong := corpus.EntryResult{Name: "tcp-established", Workload: "tcp-established", Verdict: corpus.VerdictWrong,
		Plain:         corpus.Outcome{Predicted: "ok", CRIU: "fail", Signature: "vdso-rt-bounds"},
		Disagreements: []string{"with no options CRIU failed on vdso-rt-bounds, predicted ok"}}
	return map[string]*corpus.Result{
		"6.1/bookworm": {Cell: corpus.Cell{KernelRelease: "6.1.0-57-amd64", CRIUVersion: "3.17.1", Accelerator: "tcg"},
			Entries:           []corpus.EntryResult{restored("counter", 0.5, 0.7), unfixable("vfork", "process.vfork", ""), restored("tcp-established", 0.6, 0.8)},
			CheckpointSeconds: 100, RestoreSeconds: 40},
		"7.3/bookworm": {Cell: corpus.Cell{KernelRelease: "7.3.0-1-amd64", CRIUVersion: "3.17.1", Accelerator: "tcg"},
			Entries:           []corpus.EntryResult{unfixable("counter", "criu.kernel-compat", "vdso-rt-bounds"), unfixable("vfork", "process.vfork", ""), wrong},
			CheckpointSeconds: 90, RestoreSeconds: 0},
	}
}

// fixtureResult runs the fixture matrix with the fake runner, times
// zeroed for the golden files.
func fixtureResult(t *testing.T) *Result {
	t.Helper()
	cells := Run(context.Background(), fixtureMatrix(), fakeRunner(fixtureResults()), RunOptions{Jobs: 2})
	for i := range cells {
		cells[i].Seconds = float64(100 + i)
	}
	return &Result{SchemaVersion: SchemaVersion, KataCRVersion: "test", Matrix: "gate.toml", Jobs: 2, Seconds: 300, Cells: cells}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./gate -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs (go test ./gate -update rewrites it):\n%s", name, got)
	}
}

// TestRenderGolden: the four renderers of one result, with a baseline.
func TestRenderGolden(t *testing.T) {
	r := fixtureResult(t)
	base := fixtureResult(t)
	// The baseline: 7.3 restored its counter, and the dump was faster.
	base.Cells[1].Workloads[0] = WorkloadResult{Name: "counter", Expect: ExpectRestore, Status: Pass, Verdict: corpus.VerdictRestored, DumpSeconds: 0.4, RestoreSeconds: 0.5}
	base.Cells[0].Workloads[0].DumpSeconds = 0.1
	r.Baseline = Compare(base, r, DefaultTolerance, "baseline.json")
	for _, tt := range []struct {
		name  string
		write func(*bytes.Buffer, *Result) error
	}{
		{"result.txt.golden", func(b *bytes.Buffer, r *Result) error { return WriteText(b, r) }},
		{"result.json.golden", func(b *bytes.Buffer, r *Result) error { return WriteJSON(b, r) }},
		{"result.junit.golden", func(b *bytes.Buffer, r *Result) error { return WriteJUnit(b, r) }},
		{"result.md.golden", func(b *bytes.Buffer, r *Result) error { return WriteMarkdown(b, r) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.write(&b, r); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.String())
		})
	}
}

// TestJUnitConsumer reads the JUnit output with a JUnit parser as CI
// systems do: a suite per cell with its properties, a case per workload,
// failures with the explanation.
func TestJUnitConsumer(t *testing.T) {
	r := fixtureResult(t)
	var b bytes.Buffer
	if err := WriteJUnit(&b, r); err != nil {
		t.Fatal(err)
	}
	suites, err := junit.Ingest(b.Bytes())
	if err != nil {
		t.Fatalf("the JUnit parser refuses the output: %v\n%s", err, b.String())
	}
	if len(suites) != 3 {
		t.Fatalf("%d suites, want one per cell (3)", len(suites))
	}
	s := suites[1]
	if s.Name != "7.3/bookworm" || s.Properties["kernel_release"] != "7.3.0-1-amd64" || s.Properties["criu_version"] != "3.17.1" || s.Properties["accelerator"] != "tcg" {
		t.Errorf("suite %q properties %v", s.Name, s.Properties)
	}
	if s.Totals.Tests != 3 || s.Totals.Failed != 2 || s.Totals.Passed != 1 {
		t.Errorf("suite totals %+v, want 3 tests, 2 failed, 1 passed", s.Totals)
	}
	for _, tc := range s.Tests {
		switch tc.Name {
		case "counter":
			if tc.Status != junit.StatusFailed || tc.Error == nil || !strings.Contains(tc.Message, "expected restore") || !strings.Contains(tc.Message, "criu.kernel-compat") {
				t.Errorf("counter: %s %q", tc.Status, tc.Message)
			}
		case "tcp-established":
			if tc.Status != junit.StatusFailed || !strings.Contains(tc.Message, "disagrees with CRIU") || !strings.Contains(tc.Message, "Fix:") {
				t.Errorf("tcp-established: %s %q", tc.Status, tc.Message)
			}
		case "vfork":
			if tc.Status != junit.StatusPassed {
				t.Errorf("vfork: %s", tc.Status)
			}
		}
	}
	if e := suites[2]; e.Totals.Error != 1 || e.Tests[0].Status != junit.StatusError {
		t.Errorf("the cell that did not boot: %+v", e.Totals)
	}
}

// TestMarkdownTable: the summary renders as tables with a real Markdown
// renderer (goldmark with GitHub's table extension, as
// $GITHUB_STEP_SUMMARY is rendered): the workloads table has a header of
// the cells and a row per workload, the cells table a row per cell, every
// row as wide as its header.
func TestMarkdownTable(t *testing.T) {
	var md, html bytes.Buffer
	r := fixtureResult(t)
	if err := WriteMarkdown(&md, r); err != nil {
		t.Fatal(err)
	}
	if err := goldmark.New(goldmark.WithExtensions(extension.Table)).Convert(md.Bytes(), &html); err != nil {
		t.Fatalf("render the Markdown: %v", err)
	}
	tables := regexp.MustCompile(`(?s)<table>.*?</table>`).FindAllString(html.String(), -1)
	if len(tables) != 2 {
		t.Fatalf("%d tables rendered, want 2 (workloads x cells, and the cells):\n%s", len(tables), html.String())
	}
	rowsOf := func(table string) [][]string {
		var out [][]string
		for _, tr := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(table, -1) {
			var cells []string
			for _, c := range regexp.MustCompile(`(?s)<t[hd][^>]*>(.*?)</t[hd]>`).FindAllStringSubmatch(tr[1], -1) {
				cells = append(cells, c[1])
			}
			out = append(out, cells)
		}
		return out
	}
	grid := rowsOf(tables[0])
	wantHeader := []string{"workload"}
	for _, c := range r.Cells {
		wantHeader = append(wantHeader, c.Name)
	}
	if !slices.Equal(grid[0], wantHeader) {
		t.Errorf("workloads table header %q, want %q", grid[0], wantHeader)
	}
	if len(grid) != 1+len(rows(r)) {
		t.Errorf("workloads table has %d rows, want a header and %d workloads", len(grid), len(rows(r)))
	}
	cells := rowsOf(tables[1])
	if len(cells) != 1+len(r.Cells) {
		t.Errorf("cells table has %d rows, want a header and %d cells", len(cells), len(r.Cells))
	}
	for _, table := range [][][]string{grid, cells} {
		for _, row := range table[1:] {
			if len(row) != len(table[0]) {
				t.Errorf("row %q has %d columns, its header %d", row, len(row), len(table[0]))
			}
		}
	}
}

// TestJSONRoundTrip: the JSON is versioned and reads back as a baseline.
func TestJSONRoundTrip(t *testing.T) {
	r := fixtureResult(t)
	path := filepath.Join(t.TempDir(), "base.json")
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	back, err := LoadBaseline(path)
	if err != nil {
		t.Fatal(err)
	}
	if cmp := Compare(back, r, DefaultTolerance, path); len(cmp.Regressions)+len(cmp.Improvements) != 0 {
		t.Errorf("a result against itself: %+v", cmp)
	}
	var raw map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil || raw["schema_version"] != float64(SchemaVersion) {
		t.Errorf("schema_version %v (%v)", raw["schema_version"], err)
	}
	for _, bad := range []string{`{}`, `{"schema_version": 99, "cells": [{}]}`, `not json`} {
		p := filepath.Join(t.TempDir(), "bad.json")
		_ = os.WriteFile(p, []byte(bad), 0o600)
		if _, err := LoadBaseline(p); err == nil {
			t.Errorf("LoadBaseline(%s) accepted", bad)
		}
	}
}

// TestCompare: each kind of regression and improvement.
func TestCompare(t *testing.T) {
	pass := WorkloadResult{Name: "w", Status: Pass, Verdict: corpus.VerdictRestored, DumpSeconds: 1, RestoreSeconds: 1}
	unfix := WorkloadResult{Name: "w", Status: Pass, Verdict: corpus.VerdictUnfixable}
	wrong := WorkloadResult{Name: "w", Status: Fail, Verdict: corpus.VerdictWrong, Message: "disagrees"}
	missed := WorkloadResult{Name: "w", Status: Fail, Verdict: corpus.VerdictUnfixable, Message: "expected restore"}
	errd := WorkloadResult{Name: "w", Status: Error, Message: "qemu failed"}
	slow := pass
	slow.DumpSeconds = 4
	fast := pass
	fast.DumpSeconds, fast.RestoreSeconds = 10, 10
	tests := []struct {
		name        string
		was, now    WorkloadResult
		regressions []string
		improved    []string
	}{
		{"same", pass, pass, nil, nil},
		{"no longer restored", pass, missed, []string{ChangeRestore}, nil},
		{"restored now", missed, pass, nil, []string{ChangeRestore}},
		{"prediction wrong now", unfix, wrong, []string{ChangePrediction}, nil},
		{"prediction right now", wrong, unfix, nil, []string{ChangePrediction}},
		{"restored to wrong", pass, wrong, []string{ChangeRestore, ChangePrediction}, nil},
		{"not judged now", pass, errd, []string{ChangeNotJudged}, nil},
		{"judged again", errd, pass, nil, []string{ChangeNotJudged}},
		{"dump slower", pass, slow, []string{ChangeDumpTime}, nil},
		{"faster", fast, pass, nil, []string{ChangeDumpTime, ChangeRestTime}},
		{"unfixable now restored, expected unfixable", unfix, WorkloadResult{Name: "w", Status: Fail, Verdict: corpus.VerdictRestored}, []string{ChangeStatus}, []string{ChangeRestore}},
		{"failing before and after", wrong, wrong, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := &Result{Cells: []CellResult{{Name: "c", Workloads: []WorkloadResult{tt.was}}}}
			cur := &Result{Cells: []CellResult{{Name: "c", Workloads: []WorkloadResult{tt.now}}}}
			cmp := Compare(base, cur, DefaultTolerance, "b.json")
			if got := kinds(cmp.Regressions); strings.Join(got, ",") != strings.Join(tt.regressions, ",") {
				t.Errorf("regressions %v, want %v", cmp.Regressions, tt.regressions)
			}
			if got := kinds(cmp.Improvements); strings.Join(got, ",") != strings.Join(tt.improved, ",") {
				t.Errorf("improvements %v, want %v", cmp.Improvements, tt.improved)
			}
		})
	}
	// New and gone cells and workloads.
	base := &Result{Cells: []CellResult{{Name: "old", Workloads: []WorkloadResult{pass}}, {Name: "c", Workloads: []WorkloadResult{pass}}}}
	cur := &Result{Cells: []CellResult{{Name: "c", Workloads: []WorkloadResult{pass, {Name: "new", Status: Fail}}}, {Name: "fresh", Workloads: []WorkloadResult{pass}}}}
	cmp := Compare(base, cur, DefaultTolerance, "b.json")
	if got := kinds(cmp.Regressions); strings.Join(got, ",") != ChangeNew || len(cmp.Gone) != 1 || cmp.Gone[0] != "old" {
		t.Errorf("regressions %v, gone %v", cmp.Regressions, cmp.Gone)
	}
}

func kinds(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind)
	}
	return out
}

// TestRunParallel: -j bounds the cells running at once, a failing cell
// does not stop the others, and the results keep the matrix's order.
func TestRunParallel(t *testing.T) {
	m := &Matrix{}
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		m.Cells = append(m.Cells, Cell{Name: n, Workloads: []Workload{{Name: "counter", Corpus: "counter", Expect: ExpectJudged}}, Options: Options{TimeLimit: time.Minute}})
	}
	running, peak := 0, 0
	ch := make(chan int, 1)
	ch <- 0
	run := func(ctx context.Context, c Cell, dir string) (*corpus.Result, error) {
		n := <-ch
		running = n + 1
		peak = max(peak, running)
		ch <- running
		time.Sleep(20 * time.Millisecond)
		ch <- (<-ch) - 1
		if c.Name == "b" {
			return nil, errors.New("the guest did not boot")
		}
		return &corpus.Result{Entries: []corpus.EntryResult{restored("counter", 1, 1)}}, nil
	}
	var done []string
	res := Run(context.Background(), m, run, RunOptions{Jobs: 2, Done: func(c CellResult) { done = append(done, c.Name) }})
	if peak > 2 || peak < 2 {
		t.Errorf("peak %d cells at once, want 2", peak)
	}
	if len(done) != 5 {
		t.Errorf("done called for %v", done)
	}
	for i, c := range res {
		want := Pass
		if c.Name == "b" {
			want = Error
		}
		if c.Name != m.Cells[i].Name || c.Status != want {
			t.Errorf("cell %d: %s %s, want %s %s", i, c.Name, c.Status, m.Cells[i].Name, want)
		}
	}
}

// TestRunFailFastAndCancel: --fail-fast skips the cells not started once
// one fails; a cancelled context stops the running cell and skips the
// rest; a cell beyond its time limit is an error saying so.
func TestRunFailFastAndCancel(t *testing.T) {
	m := &Matrix{}
	for _, n := range []string{"a", "b", "c"} {
		m.Cells = append(m.Cells, Cell{Name: n, Workloads: []Workload{{Name: "counter", Expect: ExpectRestore}}, Options: Options{TimeLimit: time.Minute}})
	}
	fail := func(ctx context.Context, c Cell, dir string) (*corpus.Result, error) {
		return &corpus.Result{Entries: []corpus.EntryResult{unfixable("counter", "process.vfork", "")}}, nil
	}
	res := Run(context.Background(), m, fail, RunOptions{Jobs: 1, FailFast: true})
	if res[0].Status != Fail || res[1].Status != Skipped || res[2].Status != Skipped || !strings.Contains(res[1].Error, "--fail-fast") {
		t.Errorf("fail-fast: %s %s %s (%s)", res[0].Status, res[1].Status, res[2].Status, res[1].Error)
	}
	ctx, cancel := context.WithCancel(context.Background())
	block := func(ctx context.Context, c Cell, dir string) (*corpus.Result, error) {
		cancel()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	res = Run(ctx, m, block, RunOptions{Jobs: 1})
	for _, c := range res {
		if c.Status != Skipped {
			t.Errorf("cancelled: cell %s %s (%s)", c.Name, c.Status, c.Error)
		}
	}
	m.Cells = m.Cells[:1]
	m.Cells[0].Options.TimeLimit = 10 * time.Millisecond
	slow := func(ctx context.Context, c Cell, dir string) (*corpus.Result, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	res = Run(context.Background(), m, slow, RunOptions{Jobs: 1})
	if res[0].Status != Error || !strings.Contains(res[0].Error, "time limit 10ms") {
		t.Errorf("time limit: %s %s", res[0].Status, res[0].Error)
	}
}

func TestDefaultJobs(t *testing.T) {
	if j := DefaultJobs(2048); j < 1 {
		t.Errorf("DefaultJobs = %d", j)
	}
	if j := DefaultJobs(1 << 30); j != 1 {
		t.Errorf("DefaultJobs with guests larger than memory = %d, want 1", j)
	}
}
