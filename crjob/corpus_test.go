package crjob

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// TestCorpus runs two entries in one job: each is announced, runs in a
// directory of its own (removed afterwards), is judged by a plain dump
// before the fixes, and reaches the host as a corpus report of its own.
func TestCorpus(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{dumpErr: &criu.Error{Op: "dump", Err: errors.New("exit status 1")}}
	d := testDeps(t, h, rt, cr)
	loaded := 0
	d.Guest.LoadCRIUModules = func() error { loaded++; return nil }
	co := agentapi.CheckpointOptions{Command: selfCommand(t), Prove: true}
	o := agentapi.CorpusOptions{Entries: []agentapi.CorpusCheckpoint{{Name: "one", Checkpoint: co}, {Name: "two", Checkpoint: co}}}
	if err := Corpus(t.Context(), d, o, true); err != nil {
		t.Fatal(err)
	}
	if loaded != 1 {
		t.Errorf("the modules were loaded %d times, want once for the job", loaded)
	}
	var order []string
	for _, r := range h.results {
		switch v := r.v.(type) {
		case agentapi.CorpusEntry:
			order = append(order, "entry "+v.Name)
		case agentapi.CorpusReport:
			order = append(order, "report "+v.Name)
			if v.Report == nil || v.Report.Checkpoint == nil || v.Report.Checkpoint.Plain == nil {
				t.Fatalf("report of %s: %+v: want a checkpoint judged by a plain dump", v.Name, v.Report)
			}
			if p := v.Report.Checkpoint.Plain; p.OK || !p.Unexplained {
				t.Errorf("plain dump of %s: %+v: want a failure on no known cause", v.Name, p)
			}
		}
	}
	if got := strings.Join(order, ", "); got != "entry one, report one, entry two, report two" {
		t.Errorf("results %s: want each entry announced, then its report", got)
	}
	if len(h.reports) != 0 {
		t.Errorf("%d plain reports sent: a corpus sends its entries' reports as corpus reports", len(h.reports))
	}
	plain := 0
	for _, o := range cr.dumps {
		if filepath.Base(o.ImagesDir) != "plain" {
			continue
		}
		plain++
		if !o.LeaveRunning || len(o.DumpArgs()) != 1 {
			t.Errorf("plain dump %+v: want --leave-running and no other option", o.DumpArgs())
		}
		if !strings.HasPrefix(o.ImagesDir, EntryRoot(d.Root, "one")) && !strings.HasPrefix(o.ImagesDir, EntryRoot(d.Root, "two")) {
			t.Errorf("plain dump into %s: outside the entries' directories", o.ImagesDir)
		}
	}
	if plain != 2 {
		t.Errorf("%d plain dumps, want one per entry", plain)
	}
	for _, n := range []string{"one", "two"} {
		if _, err := os.Stat(EntryRoot(d.Root, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the directory of %s is still there: %v", n, err)
		}
	}
}

// TestCorpusEntryNames: an entry's name becomes its directory: one path
// element only.
func TestCorpusEntryNames(t *testing.T) {
	for _, name := range []string{"", ".", "..", "../etc", "a/b"} {
		h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{}
		d := testDeps(t, h, rt, cr)
		o := agentapi.CorpusOptions{Entries: []agentapi.CorpusCheckpoint{{Name: name, Checkpoint: agentapi.CheckpointOptions{Command: selfCommand(t)}}}}
		if err := Corpus(t.Context(), d, o, true); err == nil || rt.starts != 0 {
			t.Errorf("entry %q: error %v, %d starts: want a refusal before anything starts", name, err, rt.starts)
		}
	}
}
