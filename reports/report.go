// Package reports holds the Report that every kata-cr command produces, its
// schema version, and the renderers that turn it into text, JSON, JUnit XML
// and Markdown.
package reports

import (
	"sort"

	"github.com/kata-cr/kata-cr/criu/criuopt"
)

// SchemaVersion changes whenever the JSON form of Report changes in a way
// that a consumer would notice. Version 2: a fix's and a prediction's CRIU
// options are typed objects (criu, restore) instead of argv words
// (criu_options, restore_options).
const SchemaVersion = "2"

// Status is the outcome of one finding.
type Status string

// The statuses a finding can have. Skip always carries a reason.
const (
	Pass  Status = "pass"
	Warn  Status = "warn"
	Fail  Status = "fail"
	Skip  Status = "skip"
	Error Status = "error"
)

// Level says how much a finding matters. Only a required finding that fails
// makes a command exit with ExitCheckFailed.
type Level string

// The levels of a requirement.
const (
	Required    Level = "required"
	Recommended Level = "recommended"
	Optional    Level = "optional"
)

// Fix is the remedy for a finding: a CRIU option to add, or a change to make.
type Fix struct {
	// Description says in one sentence what to do.
	Description string `json:"description"`
	// CRIU holds the options to add to criu dump that work around the
	// finding (the fix's delta: a plan merges them).
	CRIU criuopt.Set `json:"criu,omitzero"`
	// Restore holds the options criu restore needs as a consequence.
	Restore criuopt.Set `json:"restore,omitzero"`
	// AutoFixable is true when kata-cr can apply the fix itself.
	AutoFixable bool `json:"auto_fixable"`
	// Fixer names the kata-cr fixer that applies it, when AutoFixable.
	Fixer FixerID `json:"fixer,omitempty"`
	// Speedup says the options only make the dump faster: the finding
	// passes without them, and a plan takes them all the same.
	Speedup bool `json:"speedup,omitempty"`
}

// Finding is the result of one check, or one item of a check that looks at
// many things (one kernel option, one process).
type Finding struct {
	ID       string   `json:"id"`
	Category string   `json:"category"`
	Level    Level    `json:"level"`
	Status   Status   `json:"status"`
	Summary  string   `json:"summary"`
	Evidence []string `json:"evidence,omitempty"`
	// Reason explains a skip or an error.
	Reason string `json:"reason,omitempty"`
	Fix    *Fix   `json:"fix,omitempty"`
	// Loses says what the restored workload will lack when CRIU dumps
	// the tree as it is (a dump that succeeds and drops state).
	Loses string `json:"loses,omitempty"`
}

// Blocking reports whether the finding makes the whole run fail.
func (f Finding) Blocking() bool {
	return f.Level == Required && (f.Status == Fail || f.Status == Error)
}

// Target describes where the checks ran.
type Target struct {
	// Kind is "host", "guest" or "file" (a kernel config or a log).
	Kind          string `json:"kind"`
	KernelRelease string `json:"kernel_release,omitempty"`
	Arch          string `json:"arch,omitempty"`
	CRIUVersion   string `json:"criu_version,omitempty"`
	// Accelerator is "kvm" or "tcg" for a guest.
	Accelerator       string `json:"accelerator,omitempty"`
	AcceleratorReason string `json:"accelerator_reason,omitempty"`
	// Sources names what was read: config files, logs, a PID.
	Sources []string `json:"sources,omitempty"`
}

// Prediction says whether a CRIU dump of the checked tree will succeed.
type Prediction struct {
	// DumpWillSucceed is about a plain dump, without extra options.
	DumpWillSucceed bool `json:"dump_will_succeed"`
	// WithOptions is true when a dump with the CRIU options will succeed.
	WithOptions bool `json:"succeeds_with_options"`
	// TreeDumpable is about the process tree and its mounts alone
	// (process.* and mount.* findings, with CRIU options where they help);
	// EnvironmentReady is about the machine: kernel, CRIU, privileges.
	// A dump succeeds only when both hold.
	TreeDumpable     bool `json:"tree_dumpable"`
	EnvironmentReady bool `json:"environment_ready"`
	// Reasons lists the blocking findings, one line each; BlockedBy their
	// IDs, each once, in the same order.
	Reasons   []string `json:"reasons,omitempty"`
	BlockedBy []string `json:"blocked_by,omitempty"`
	// CRIU holds the options the dump needs to succeed: the fixes' options
	// of the findings that CRIU options can work around, merged.
	CRIU criuopt.Set `json:"criu,omitzero"`
	// Restore holds the matching restore options, merged.
	Restore criuopt.Set `json:"restore,omitzero"`
	// Losses are the findings that say a dump CRIU accepts will lose
	// state of the workload (Finding.Loses): the restore may succeed and
	// the workload still not carry on.
	Losses []string `json:"losses,omitempty"`
}

// Action is something kata-cr changed, or would change, to fix a finding.
type Action struct {
	Fixer   FixerID  `json:"fixer"`
	Finding string   `json:"finding,omitempty"`
	Applied bool     `json:"applied"`
	Summary string   `json:"summary"`
	Command []string `json:"command,omitempty"`
	Error   string   `json:"error,omitempty"`
	// BlockedBy, for a destructive fix that was not applied, are the
	// findings that no fix mends: the dump would fail on them anyway.
	BlockedBy []string `json:"blocked_by,omitempty"`
}

// Explanation maps one error in a CRIU log to its cause and fix.
type Explanation struct {
	Source    string   `json:"source"`
	Line      int      `json:"line"`
	Signature string   `json:"signature"`
	Known     bool     `json:"known"`
	Cause     string   `json:"cause"`
	Fix       string   `json:"fix,omitempty"`
	Quote     []string `json:"quote"`
}

// Label names the explanation for people: its signature when kata-cr knows
// the cause; otherwise "unknown error", or, for a follow-on line such as
// "Dumping FAILED." with no error before it, its signature marked as such.
func (e Explanation) Label() string {
	switch {
	case e.Known:
		return e.Signature
	case e.Signature == "" || e.Signature == "unknown":
		return "unknown error"
	default:
		return e.Signature + " (cause not in the log)"
	}
}

// Report is what a kata-cr command produced.
type Report struct {
	SchemaVersion string      `json:"schema_version"`
	Tool          string      `json:"tool"`
	Version       string      `json:"version"`
	Command       string      `json:"command"`
	Target        Target      `json:"target"`
	Findings      []Finding   `json:"findings,omitempty"`
	Prediction    *Prediction `json:"prediction,omitempty"`
	// Plan is the prediction after the fixes, when fixes were applied.
	Plan         *Prediction   `json:"plan,omitempty"`
	Actions      []Action      `json:"actions,omitempty"`
	Explanations []Explanation `json:"explanations,omitempty"`
	Checkpoint   *Checkpoint   `json:"checkpoint,omitempty"`
	Tally        Tally         `json:"tally"`
	Verdict      string        `json:"verdict"`
	// Failed is true when a required finding failed: the exit code is 3.
	Failed bool `json:"failed"`
}

// Tally counts findings by status.
type Tally struct {
	Pass  int `json:"pass"`
	Warn  int `json:"warn"`
	Fail  int `json:"fail"`
	Skip  int `json:"skip"`
	Error int `json:"error"`
}

// New returns an empty report for command.
func New(command, version string) *Report {
	return &Report{SchemaVersion: SchemaVersion, Tool: "kata-cr", Version: version, Command: command}
}

// statusRank orders findings worst first.
var statusRank = map[Status]int{Fail: 0, Error: 1, Warn: 2, Skip: 3, Pass: 4}

// Finish sorts the findings worst first (stable, so checks keep their order
// within a status), counts them and sets Failed and a default Verdict.
func (r *Report) Finish() {
	sort.SliceStable(r.Findings, func(i, j int) bool {
		return statusRank[r.Findings[i].Status] < statusRank[r.Findings[j].Status]
	})
	r.Tally = Tally{}
	r.Failed = false
	for _, f := range r.Findings {
		switch f.Status {
		case Pass:
			r.Tally.Pass++
		case Warn:
			r.Tally.Warn++
		case Fail:
			r.Tally.Fail++
		case Skip:
			r.Tally.Skip++
		case Error:
			r.Tally.Error++
		}
		if f.Blocking() {
			r.Failed = true
		}
	}
	if r.Checkpoint != nil && !r.Checkpoint.OK() {
		r.Failed = true
	}
	if r.Verdict == "" {
		if r.Failed {
			r.Verdict = "a required check failed"
		} else {
			r.Verdict = "no required check failed"
		}
	}
}

// FixerID names a kata-cr fixer (checks holds the constants): a finding's
// Fix.Fixer points at the fixer that mends it, an Action says which one
// acted.
type FixerID string
