package corpus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// Booter boots a fresh guest of one cell (a kernel and a CRIU) and runs
// one job in it, handing each of the agent's events to handle.
type Booter interface {
	Run(ctx context.Context, job agentapi.Job, handle func(*vm.VM, agentapi.Event) error) (*vm.Result, error)
}

// Options say what Run runs.
type Options struct {
	Entries []Entry
	// Dir receives each entry's checkpoint, in Dir/NAME; it is created
	// 0700 and must not hold checkpoints of these entries yet.
	Dir string
	// Version is kata-cr's, for the manifests.
	Version string
	Verbose bool
	// Event, when set, sees every event of the agents (progress).
	Event func(agentapi.Event)
	// NoFix runs the checkpoints without kata-cr's fixers (no module
	// loads, no restart): the plan holds CRIU options only.
	NoFix bool
}

// Result is the corpus on one cell.
type Result struct {
	SchemaVersion int           `json:"schema_version"`
	Cell          Cell          `json:"cell"`
	Entries       []EntryResult `json:"entries"`
	Counts        Counts        `json:"counts"`
	// CheckpointSeconds and RestoreSeconds are the wall times of the two
	// guests, boots included.
	CheckpointSeconds float64 `json:"checkpoint_seconds"`
	RestoreSeconds    float64 `json:"restore_seconds"`
}

// Cell is the guest the corpus ran in.
type Cell struct {
	// Spec names the cell of Cells the run was asked for, if any.
	Spec          string `json:"spec,omitempty"`
	KernelRelease string `json:"kernel_release"`
	CRIUVersion   string `json:"criu_version"`
	Accelerator   string `json:"accelerator,omitempty"`
}

// Name is the cell as the truth table heads it.
func (c Cell) Name() string {
	s := fmt.Sprintf("kernel %s, CRIU %s", c.KernelRelease, c.CRIUVersion)
	if c.Spec != "" {
		s = c.Spec + ": " + s
	}
	return s
}

// Counts sums up the entries' verdicts.
type Counts struct {
	Entries       int `json:"entries"`
	Restored      int `json:"restored"`
	Unfixable     int `json:"unfixable"`
	Wrong         int `json:"wrong"`
	Error         int `json:"error"`
	Disagreements int `json:"disagreements"`
	Unknown       int `json:"unknown"`
}

// OK says every entry was judged and none was wrong.
func (r *Result) OK() bool {
	return r.Counts.Wrong == 0 && r.Counts.Error == 0 && r.Counts.Entries > 0
}

// Run runs the corpus on the cell b boots: the checkpoint job of every
// entry in one guest, the restore of every saved checkpoint in one fresh
// guest, and judges each entry. An error is a failure of a guest or of the
// host, not of an entry.
func Run(ctx context.Context, b Booter, o Options) (*Result, error) {
	if len(o.Entries) == 0 {
		return nil, errNoEntries
	}
	if err := Check(o.Entries); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the corpus directory: %w", err)
	}
	r := &run{o: o, reports: make([]*reports.Report, len(o.Entries)), why: make([]string, len(o.Entries)), saved: make([]*images.Set, len(o.Entries))}
	res := &Result{SchemaVersion: SchemaVersion}
	start := time.Now()
	vr, err := b.Run(ctx, r.checkpointJob(), r.checkpointEvent(ctx))
	if err != nil {
		return nil, fmt.Errorf("run the corpus's checkpoints: %w", err)
	}
	res.CheckpointSeconds = time.Since(start).Seconds()
	if job, ok := r.restoreJob(); ok {
		start = time.Now()
		if _, err := b.Run(ctx, job, r.restoreEvent(ctx)); err != nil {
			return nil, fmt.Errorf("run the corpus's restores: %w", err)
		}
		res.RestoreSeconds = time.Since(start).Seconds()
	}
	for i, e := range o.Entries {
		rep := r.reports[i]
		if err := writeReport(o.Dir, e.Name, rep); err != nil {
			return nil, err
		}
		if rep != nil && res.Cell.KernelRelease == "" {
			res.Cell = Cell{KernelRelease: rep.Target.KernelRelease, CRIUVersion: rep.Target.CRIUVersion}
		}
		res.add(Judge(e, rep, r.why[i]))
	}
	if vr != nil && vr.Agent != nil && res.Cell.KernelRelease == "" {
		res.Cell.KernelRelease = vr.Agent.KernelRelease
	}
	return res, nil
}

func (res *Result) add(er EntryResult) {
	res.Entries = append(res.Entries, er)
	c := &res.Counts
	c.Entries++
	c.Disagreements += len(er.Disagreements)
	c.Unknown += len(er.Unknown)
	switch er.Verdict {
	case VerdictRestored:
		c.Restored++
	case VerdictUnfixable:
		c.Unfixable++
	case VerdictWrong:
		c.Wrong++
	default:
		c.Error++
	}
}

// run is one corpus run's state on the host.
type run struct {
	o       Options
	cur     int
	reports []*reports.Report
	why     []string
	saved   []*images.Set
}

func (r *run) checkpointJob() agentapi.Job {
	var co agentapi.CorpusOptions
	for _, e := range r.o.Entries {
		cp := agentapi.CheckpointOptions{Workload: e.Workload, Command: e.Command, Terminal: e.Terminal, RuntimeSetsid: !e.OldAgent, Prove: true,
			VerifyExecBefore: e.VerifyExec, VerifyExec: e.VerifyExec}
		if b := e.Bundle; b != nil {
			cp.Bundle = &agentapi.BundleOptions{Dir: b.Dir, Spec: b.Spec, RootfsTag: e.RootfsTag}
		}
		co.Entries = append(co.Entries, agentapi.CorpusCheckpoint{Name: e.Name, Checkpoint: cp})
	}
	data, _ := json.Marshal(co)
	return agentapi.Job{Kind: agentapi.JobCorpus, Fix: !r.o.NoFix, Verbose: r.o.Verbose, Options: data}
}

// restoreJob restores every entry whose checkpoint was saved; ok is false
// when there is none.
func (r *run) restoreJob() (agentapi.Job, bool) {
	var ro agentapi.CorpusRestoreOptions
	for i, e := range r.o.Entries {
		if r.saved[i] != nil {
			ro.Entries = append(ro.Entries, agentapi.CorpusRestore{Name: e.Name, Restore: agentapi.RestoreOptions{Manifest: r.saved[i].Manifest, RootfsTag: e.RootfsTag}})
		}
	}
	data, _ := json.Marshal(ro)
	return agentapi.Job{Kind: agentapi.JobCorpusRestore, LoadModules: true, Verbose: r.o.Verbose, Options: data}, len(ro.Entries) > 0
}

// entry moves the run to the entry an announcement names.
func (r *run) entry(ev agentapi.Event) error {
	var e agentapi.CorpusEntry
	if err := json.Unmarshal(ev.Data, &e); err != nil {
		return fmt.Errorf("read the corpus entry from the guest: %w", err)
	}
	i := r.index(e.Name)
	if i < 0 {
		return fmt.Errorf("the guest announced %q, which is not an entry of this run", e.Name)
	}
	r.cur = i
	return nil
}

func (r *run) index(name string) int {
	for i, e := range r.o.Entries {
		if e.Name == name {
			return i
		}
	}
	return -1
}

// report reads an entry's report.
func (r *run) report(ev agentapi.Event) (*agentapi.CorpusReport, error) {
	var cr agentapi.CorpusReport
	if err := json.Unmarshal(ev.Data, &cr); err != nil {
		return nil, fmt.Errorf("read a corpus report from the guest: %w", err)
	}
	if i := r.index(cr.Name); i != r.cur || i < 0 {
		return nil, fmt.Errorf("the guest sent the report of %q during entry %q", cr.Name, r.o.Entries[r.cur].Name)
	}
	return &cr, nil
}

func (r *run) checkpointEvent(ctx context.Context) func(*vm.VM, agentapi.Event) error {
	return func(v *vm.VM, ev agentapi.Event) error {
		if r.o.Event != nil {
			r.o.Event(ev)
		}
		if ev.Kind != agentapi.EventResult {
			return nil
		}
		switch ev.Stage {
		case agentapi.ResultCorpusEntry:
			return r.entry(ev)
		case agentapi.ResultImages:
			return r.save(ctx, v, ev)
		case agentapi.ResultCorpusReport:
			cr, err := r.report(ev)
			if err != nil {
				return err
			}
			r.reports[r.cur], r.why[r.cur] = cr.Report, cr.Error
			if cr.Report != nil {
				cr.Report.Command = "checkpoint"
			}
		}
		return nil
	}
}

// save writes the current entry's images, streamed on the data port, and
// tells the agent. A stream cut in the middle leaves the port unusable
// for the entries after it: that ends the run.
func (r *run) save(ctx context.Context, v *vm.VM, ev agentapi.Event) error {
	var ir agentapi.ImagesReady
	if err := json.Unmarshal(ev.Data, &ir); err != nil {
		return fmt.Errorf("read the images' manifest from the guest: %w", err)
	}
	conn, err := v.Data(ctx)
	if err != nil {
		return fmt.Errorf("open the data channel: %w", err)
	}
	ir.Manifest.KataCRVersion = r.o.Version
	name := r.o.Entries[r.cur].Name
	set, err := images.Write(filepath.Join(r.o.Dir, name), ir.Manifest, images.FromTar(conn))
	answer := agentapi.ImagesSaved{OK: err == nil}
	if err != nil {
		answer.Error = err.Error()
	} else {
		answer.Dir = set.Dir
		r.saved[r.cur] = set
	}
	if serr := v.Send(agentapi.HostMessage{Kind: agentapi.HostImagesSaved, Saved: &answer}); serr != nil {
		return fmt.Errorf("tell the guest whether the images of %s were saved: %w", name, serr)
	}
	if err != nil {
		return fmt.Errorf("save the checkpoint of %s: %w", name, err)
	}
	return nil
}

func (r *run) restoreEvent(ctx context.Context) func(*vm.VM, agentapi.Event) error {
	return func(v *vm.VM, ev agentapi.Event) error {
		if r.o.Event != nil {
			r.o.Event(ev)
		}
		switch {
		case ev.Kind == agentapi.EventProgress && ev.Stage == agentapi.StageReceiveImages:
			set := r.saved[r.cur]
			if set == nil {
				return fmt.Errorf("the guest asked for the images of %s, which has none", r.o.Entries[r.cur].Name)
			}
			conn, err := v.Data(ctx)
			if err != nil {
				return fmt.Errorf("open the data channel: %w", err)
			}
			if err := images.WriteTar(conn, set.Dir); err != nil {
				return fmt.Errorf("send the images of %s to the guest: %w", r.o.Entries[r.cur].Name, err)
			}
		case ev.Kind != agentapi.EventResult:
		case ev.Stage == agentapi.ResultCorpusEntry:
			return r.entry(ev)
		case ev.Stage == agentapi.ResultCorpusReport:
			cr, err := r.report(ev)
			if err != nil {
				return err
			}
			r.mergeRestore(cr)
		}
		return nil
	}
}

// mergeRestore adds a restore's outcome to its entry's checkpoint report.
func (r *run) mergeRestore(cr *agentapi.CorpusReport) {
	rep := r.reports[r.cur]
	if rep == nil || rep.Checkpoint == nil {
		return
	}
	rep.Checkpoint.WantRestore = true
	if cr.Report == nil || cr.Report.Checkpoint == nil {
		rep.Checkpoint.RestoreRan = true
		rep.Checkpoint.Error = "restore: " + orNone(cr.Error)
		return
	}
	rep.MergeRestore(cr.Report)
}

// writeReport keeps an entry's whole report beside its checkpoint, in
// DIR/NAME.report.json (0600: it quotes the workload's state), for a look
// at why the entry was judged as it was.
func writeReport(dir, name string, rep *reports.Report) error {
	if rep == nil {
		return nil
	}
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the report of %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".report.json"), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("keep the report of %s: %w", name, err)
	}
	return nil
}

// errNoEntries is returned for a run without entries.
var errNoEntries = errors.New("no corpus entries to run")
