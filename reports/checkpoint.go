package reports

import (
	"fmt"
	"strings"
)

// Checkpoint is the outcome of a checkpoint (and restore) of a workload.
type Checkpoint struct {
	Workload string   `json:"workload"`
	Command  []string `json:"command,omitempty"`
	// Stage is the last stage reached: preflight, fix, dump, copy, restore, verify, done.
	Stage          string   `json:"stage"`
	DumpOK         bool     `json:"dump_ok"`
	DumpOptions    []string `json:"dump_options,omitempty"`
	DumpSeconds    float64  `json:"dump_seconds,omitempty"`
	ImagesDir      string   `json:"images_dir,omitempty"`
	ImageBytes     int64    `json:"image_bytes,omitempty"`
	RestoreRan     bool     `json:"restore_ran"`
	RestoreOK      bool     `json:"restore_ok"`
	RestoreOptions []string `json:"restore_options,omitempty"`
	RestoreSeconds float64  `json:"restore_seconds,omitempty"`
	RestoredPID    int      `json:"restored_pid,omitempty"`
	Verified       bool     `json:"verified"`
	Verification   string   `json:"verification,omitempty"`
	// Archive is the checkpoint archive written by --export, or read by
	// restore --import.
	Archive string `json:"archive,omitempty"`
	// WorkloadRunning reports whether the original workload was still
	// running after a failed dump (it must be).
	WorkloadRunning *bool `json:"workload_running,omitempty"`
	// PredictionMatched is true when the preflight prediction agreed with
	// what CRIU really did.
	PredictionMatched *bool         `json:"prediction_matched,omitempty"`
	Error             string        `json:"error,omitempty"`
	Explanations      []Explanation `json:"explanations,omitempty"`
	// WantRestore says whether a restore was requested, so OK can judge.
	WantRestore bool `json:"want_restore"`
	// StateBefore is the workload's own state recorded right before the
	// dump (a counter's value, a lock's holder); StateAfter the same probe
	// read from the restored workload once it was verified, or from the
	// original a moment after a failed dump.
	StateBefore map[string]string `json:"state_before,omitempty"`
	StateAfter  map[string]string `json:"state_after,omitempty"`
	// SandboxFilesSeen are the sandbox's files (/etc/hosts, ...) that the
	// restored container was checked to see on their mount points.
	SandboxFilesSeen []string `json:"sandbox_files_seen,omitempty"`
	// FailureSignature is the first cause CRIU's log names for a failed
	// dump (a criulog signature ID); PredictedBy the preflight findings
	// that predicted it.
	FailureSignature string   `json:"failure_signature,omitempty"`
	PredictedBy      []string `json:"predicted_by,omitempty"`
	// Plain is raw CRIU's judgement of the prediction before any fix:
	// with --prove, a dump of the workload as it was started, with no
	// option kata-cr plans (--leave-running, into a scratch directory).
	Plain *RawDump `json:"plain,omitempty"`
	// Proofs are the dumps --prove ran without one finding's options.
	Proofs []Proof `json:"proofs,omitempty"`
	// InitExit is how the container init ended when the workload died
	// before it could be checkpointed.
	InitExit *ExitStatus `json:"init_exit,omitempty"`
	// InitOutput is the end of what that init wrote to its stdout and
	// stderr, one line each.
	InitOutput []string `json:"init_output,omitempty"`
	// DumpLog is where the host keeps CRIU's log of a failed dump, beside
	// the images directory the checkpoint would have filled.
	DumpLog string `json:"dump_log,omitempty"`
	// Refusals are the steps kata-cr would not take, with the findings
	// that made it refuse: a restart that would lose the workload's state
	// and still leave the dump failing, a dump CRIU could only give up on
	// after its time limit.
	Refusals []Refusal `json:"refusals,omitempty"`
	// CRIUHung says a CRIU call did not answer within its time limit and
	// was killed; WorkloadRunning then says whether the workload runs on.
	CRIUHung bool `json:"criu_hung,omitempty"`
	// Container is the container as it ran before the dump (its mount
	// table and cgroup); RestoredContainer the restored one.
	Container         *ContainerInfo `json:"container,omitempty"`
	RestoredContainer *ContainerInfo `json:"restored_container,omitempty"`
	// Probes are the commands run inside the container to record its
	// state before the dump and to verify it after the restore.
	Probes []ExecProbe `json:"probes,omitempty"`
	// Timing is how long the workload was frozen and gone, and how long
	// the whole checkpoint took.
	Timing *Timing `json:"timing,omitempty"`
	// Bench is kata-cr's dump and restore next to raw CRIU's in the same
	// guest (--bench).
	Bench *Bench `json:"bench,omitempty"`
}

// Bench is the benchmark --bench runs in the checkpoint's guest: kata-cr's
// dump and its restore of the same images there, then a raw `criu dump`
// and `criu restore` of a fresh copy of the workload with the same
// options (RawDumpCommand).
type Bench struct {
	KataCRDumpSeconds    float64  `json:"katacr_dump_seconds"`
	KataCRRestoreSeconds float64  `json:"katacr_restore_seconds"`
	RawDumpSeconds       float64  `json:"raw_dump_seconds"`
	RawRestoreSeconds    float64  `json:"raw_restore_seconds"`
	RawDumpCommand       []string `json:"raw_dump_command,omitempty"`
}

// Timing is what a checkpoint costs the workload and its user. Freeze
// comes from CRIU's statistics of the final dump; Downtime and EndToEnd
// are measured on the host's clock, the only one both guests share.
type Timing struct {
	// FreezeSeconds is how long the final dump kept the tree stopped:
	// CRIU's freezing_time + frozen_time (stats-dump).
	FreezeSeconds float64 `json:"freeze_seconds"`
	// MemdumpSeconds and MemwriteSeconds are CRIU's time to collect and to
	// write the memory within the freeze.
	MemdumpSeconds  float64 `json:"memdump_seconds,omitempty"`
	MemwriteSeconds float64 `json:"memwrite_seconds,omitempty"`
	// PagesWritten are the pages the final dump wrote; PagesSkippedParent
	// those its pre-dumps had already written and that had not changed.
	PagesWritten       uint64 `json:"pages_written,omitempty"`
	PagesSkippedParent uint64 `json:"pages_skipped_parent,omitempty"`
	// PreDumps are the pre-dumps that ran before the final dump
	// (--pre-dump N), in order; the workload ran on during each.
	PreDumps []PreDump `json:"pre_dumps,omitempty"`
	// DowntimeSeconds runs from the freeze (the guest's announcement that
	// the final dump starts) until the restored workload runs in the
	// target guest (the announcement that CRIU's restore ended); zero
	// when no restore ran.
	DowntimeSeconds float64 `json:"downtime_seconds,omitempty"`
	// EndToEndSeconds runs from starting the first guest's qemu until the
	// restored workload runs (zero without a restore); SavedSeconds until
	// the host had saved the images.
	EndToEndSeconds float64 `json:"end_to_end_seconds,omitempty"`
	SavedSeconds    float64 `json:"saved_seconds,omitempty"`
	// Overlap says whether the restore guest booted while the first one
	// checked and dumped, and why (--overlap).
	Overlap       bool   `json:"overlap"`
	OverlapReason string `json:"overlap_reason,omitempty"`
	// Stages is the profile: each stage the guests announced, with the
	// host's time since the first guest's qemu started.
	Stages []StageTime `json:"stages,omitempty"`
}

// PreDump is one CRIU pre-dump: the memory it copied while the workload
// ran on, and how long it stopped the tree to do so.
type PreDump struct {
	FreezeSeconds float64 `json:"freeze_seconds"`
	Seconds       float64 `json:"seconds"`
	PagesWritten  uint64  `json:"pages_written"`
}

// StageTime is one stage of the profile: Guest is "A" (checkpoint) or "B"
// (restore), Stage the agent's stage name, Seconds the host's time since
// guest A's qemu started.
type StageTime struct {
	Guest   string  `json:"guest"`
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// Consistent reports whether the timings are in the order they must be:
// the freeze within the downtime, the downtime within the end-to-end time.
func (t *Timing) Consistent() bool {
	if t.FreezeSeconds <= 0 {
		return false
	}
	if t.DowntimeSeconds == 0 && t.EndToEndSeconds == 0 {
		return true
	}
	return t.FreezeSeconds <= t.DowntimeSeconds && t.DowntimeSeconds <= t.EndToEndSeconds
}

// Line says the timings in one line for the human renderers.
func (t *Timing) Line() string {
	parts := []string{fmt.Sprintf("freeze %.2fs", t.FreezeSeconds)}
	if n := len(t.PreDumps); n > 0 {
		parts[0] += fmt.Sprintf(" after %d pre-dump(s), %d pages written, %d unchanged", n, t.PagesWritten, t.PagesSkippedParent)
	}
	if t.DowntimeSeconds > 0 {
		parts = append(parts, fmt.Sprintf("downtime %.2fs", t.DowntimeSeconds))
	}
	if t.EndToEndSeconds > 0 {
		parts = append(parts, fmt.Sprintf("end to end %.2fs", t.EndToEndSeconds))
	}
	if t.Overlap {
		parts = append(parts, "restore guest booted during the dump")
	}
	return strings.Join(parts, ", ")
}

// ExitStatus is how a process ended: its exit code, or -1 and the signal
// that killed it.
type ExitStatus struct {
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
}

// OK reports whether everything that was asked for succeeded.
func (c *Checkpoint) OK() bool {
	if !c.DumpOK {
		return false
	}
	if c.WantRestore {
		return c.RestoreOK && c.Verified
	}
	return true
}

// Proof is CRIU's own answer to one prediction: a dump without the options
// that work around Finding.
type Proof struct {
	Finding string `json:"finding"`
	// Without are the options left out, as criu words.
	Without string `json:"without"`
	// Failed says whether that dump failed; Signature is the cause CRIU's
	// log names (a criulog signature ID), empty when none is known.
	Failed    bool   `json:"failed"`
	Signature string `json:"signature,omitempty"`
	// Confirmed is true when the dump failed on a cause the finding names.
	Confirmed bool `json:"confirmed"`
	// Hung says CRIU did not answer within the proof's time limit and was
	// killed: what a finding that predicts a hang (process.vfork) names.
	Hung bool `json:"hung,omitempty"`
	// WorkloadRunning says whether the workload ran on after the proof's
	// dump (it must: CRIU thaws the tree, or lets go of it when killed).
	WorkloadRunning *bool `json:"workload_running,omitempty"`
}

// RawDump is one dump kata-cr ran only to let CRIU judge a prediction.
type RawDump struct {
	// Options are the options of that dump, as criu words (none for the
	// plain dump).
	Options []string `json:"options,omitempty"`
	// OK says the dump succeeded.
	OK bool `json:"ok"`
	// Signature is the cause CRIU's log names for a failure (a criulog
	// signature ID), empty when kata-cr knows none; Unexplained says the
	// dump failed on a cause no signature explains.
	Signature   string `json:"signature,omitempty"`
	Unexplained bool   `json:"unexplained,omitempty"`
	// Hung says CRIU did not answer within the dump's time limit.
	Hung bool `json:"hung,omitempty"`
	// PredictedBy are the prediction's blockers the failure's cause names.
	PredictedBy []string `json:"predicted_by,omitempty"`
	Seconds     float64  `json:"seconds,omitempty"`
}

// Refusal is a step kata-cr refused to take.
type Refusal struct {
	// Step is the fixer or the stage refused: "restart-setsid", "dump".
	Step string `json:"step"`
	// BlockedBy are the findings that made kata-cr refuse.
	BlockedBy []string `json:"blocked_by"`
	Reason    string   `json:"reason"`
}
