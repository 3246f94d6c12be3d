package crjob

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// Corpus runs the checkpoint job of every entry of o in turn, in this one
// guest, after loading the modules CRIU needs once for all of them (so
// that each entry's plain dump judges the workload, not the guest). Each
// entry gets a directory of its own below the job's root, removed when
// its job ends; its events reach the host after an announcement of the
// entry, and its report as a corpus report. An entry whose job fails
// does not stop the others.
func Corpus(ctx context.Context, d *Deps, o agentapi.CorpusOptions, fix bool) error {
	if fix && d.Guest.LoadCRIUModules != nil {
		if err := d.Guest.LoadCRIUModules(); err != nil {
			return fmt.Errorf("load the modules CRIU needs: %w", err)
		}
	}
	// The guest's kernel and CRIU are the same for every entry: what their
	// checks found once holds for all (checks.Settle).
	if d.Guest.Env != nil && len(d.Guest.Checks) > 0 {
		env, _ := d.Guest.Env(ctx)
		settled := *d
		var live []string
		settled.Guest.Checks, live = checks.Settle(ctx, env, d.Guest.Checks)
		d.Host.Progress("checks", "checked the guest once for all %d entries; %d of its %d checks found something to fix and run again for each: %s",
			len(o.Entries), len(live), len(d.Guest.Checks), strings.Join(live, ", "))
		d = &settled
	}
	return eachEntry(ctx, d, entryNames(o.Entries, func(e agentapi.CorpusCheckpoint) string { return e.Name }),
		func(ctx context.Context, ed *Deps, i int) error {
			return Checkpoint(ctx, ed, o.Entries[i].Checkpoint, fix)
		})
}

// CorpusRestore restores every entry of o in turn, in this one fresh
// guest, each in the directory its checkpoint had, and verifies it.
func CorpusRestore(ctx context.Context, d *Deps, o agentapi.CorpusRestoreOptions) error {
	if d.Guest.LoadCRIUModules != nil {
		if err := d.Guest.LoadCRIUModules(); err != nil {
			return fmt.Errorf("load the modules CRIU needs: %w", err)
		}
	}
	return eachEntry(ctx, d, entryNames(o.Entries, func(e agentapi.CorpusRestore) string { return e.Name }),
		func(ctx context.Context, ed *Deps, i int) error {
			return Restore(ctx, ed, o.Entries[i].Restore, false)
		})
}

func entryNames[E any](entries []E, name func(E) string) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = name(e)
	}
	return out
}

// eachEntry runs job for each named entry with Deps of its own: its
// directory (EntryRoot) and a host channel that tags what it sends.
func eachEntry(ctx context.Context, d *Deps, names []string, job func(ctx context.Context, ed *Deps, i int) error) error {
	for i, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
			return fmt.Errorf("corpus entry %q: a name is one path element (it names the entry's directory)", name)
		}
		e := agentapi.CorpusEntry{Index: i, Name: name}
		if err := d.Host.Result(agentapi.ResultCorpusEntry, e); err != nil {
			return err
		}
		ed := *d
		ed.Root = EntryRoot(d.root(), name)
		eh := &entryHost{Host: d.Host, entry: e}
		ed.Host = eh
		err := job(ctx, &ed, i)
		if err != nil || !eh.sent {
			why := "the entry's job sent no report"
			if err != nil {
				why = err.Error()
			}
			d.Host.Progress("corpus", "%s: %s", name, why)
			if err := d.Host.Result(agentapi.ResultCorpusReport, agentapi.CorpusReport{CorpusEntry: e, Error: why}); err != nil {
				return err
			}
		}
		// The entry's container is gone with its job; its images are
		// with the host.
		if err := os.RemoveAll(ed.Root); err != nil {
			d.Host.Logf("remove %s: %v", ed.Root, err)
		}
	}
	return nil
}

// EntryRoot is the directory of a corpus entry's job below root: the same
// in the checkpoint guest and the restore guest, as the restore needs.
func EntryRoot(root, name string) string {
	return filepath.Join(root, "corpus", name)
}

// entryHost is a corpus entry's channel to the host: its report becomes
// a corpus report of the entry; everything else passes through.
type entryHost struct {
	Host
	entry agentapi.CorpusEntry
	sent  bool
}

func (h *entryHost) Send(ev agentapi.Event) error {
	if ev.Kind != agentapi.EventReport {
		return h.Host.Send(ev)
	}
	h.sent = true
	return h.Host.Result(agentapi.ResultCorpusReport, agentapi.CorpusReport{CorpusEntry: h.entry, Report: ev.Report})
}

func (h *entryHost) Progress(stage, format string, args ...any) {
	h.Host.Progress(stage, "%s: %s", h.entry.Name, fmt.Sprintf(format, args...))
}
