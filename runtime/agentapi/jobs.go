package agentapi

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-cr/kata-cr/images"
)

// CheckpointOptions are the Options of a checkpoint job: which workload the
// agent starts, as which runtime would, and what it may do to dump it. The
// job's Fix field is --auto-fix.
type CheckpointOptions struct {
	// Workload names an entry of container.Workloads; Command, when set,
	// runs that argv instead.
	Workload string   `json:"workload,omitempty"`
	Command  []string `json:"command,omitempty"`
	// Terminal gives the workload a pty (-t).
	Terminal bool `json:"terminal,omitempty"`
	// RuntimeSetsid makes the container init a session leader from the
	// start, as runc and the Kata agent 4.1.0 do.
	RuntimeSetsid bool `json:"runtime_setsid,omitempty"`
	// NoRestart refuses the restart-setsid fix instead of restarting the
	// workload (which loses its in-memory state).
	NoRestart bool `json:"no_restart,omitempty"`
	// AcceptLoss dumps, with fixes, even a tree the plan predicts CRIU
	// dumps with a loss of state (Prediction.Losses); without it such a
	// dump is refused and the workload left running.
	AcceptLoss bool `json:"accept_loss,omitempty"`
	// LeaveRunning keeps the original workload running after the dump.
	LeaveRunning bool `json:"leave_running,omitempty"`
	// Bench also times a raw criu dump and restore of the same workload
	// in the same guest, with the criu command line.
	Bench bool `json:"bench,omitempty"`
	// Prove dumps once without each CRIU option the plan adds, so that
	// CRIU itself confirms each prediction it works around.
	Prove bool `json:"prove,omitempty"`
	// PreDumps is the number of CRIU pre-dumps (soft-dirty memory
	// tracking) before the final dump, which then writes only the pages
	// changed since the last one (--pre-dump N).
	PreDumps int `json:"pre_dumps,omitempty"`
	// Fault injects a failure during the job, for kata-cr's fault tests;
	// no flag sets it.
	Fault Fault `json:"fault,omitempty"`
	// Bundle is the user's OCI bundle (--bundle) to run instead of a
	// named workload.
	Bundle *BundleOptions `json:"bundle,omitempty"`
	// VerifyExecBefore are the commands run in the container to record
	// its state before the dump (--verify-exec-before), VerifyExec those
	// that verify the restored container (--verify-exec), each an argv.
	VerifyExecBefore [][]string `json:"verify_exec_before,omitempty"`
	VerifyExec       [][]string `json:"verify_exec,omitempty"`
}

// BundleOptions are a user's OCI bundle as the guest needs it: its
// runtime spec, and the tag of the virtio-9p share that holds its rootfs.
type BundleOptions struct {
	// Dir is the bundle's directory on the host, for the report.
	Dir       string      `json:"dir"`
	Spec      *specs.Spec `json:"spec"`
	RootfsTag string      `json:"rootfs_tag"`
}

// RestoreOptions are the Options of a restore job. The images follow on
// the DataPort as a tar stream once the agent asks for them with a
// progress event of stage StageReceiveImages.
type RestoreOptions struct {
	Manifest images.Manifest `json:"manifest"`
	// RootfsTag is the tag of the share of the bundle's rootfs, for a
	// checkpoint of a bundle.
	RootfsTag string `json:"rootfs_tag,omitempty"`
	// VerifyExec are the commands that verify the restored container.
	VerifyExec [][]string `json:"verify_exec,omitempty"`
	// ManifestFromImages says the job came before the checkpoint existed
	// (a guest booted during the dump): Manifest is empty, and the agent
	// reads the manifest from the images (manifest.json) once they came.
	// It loads its modules and reads its environment while it waits.
	ManifestFromImages bool `json:"manifest_from_images,omitempty"`
	// Workload and Command are the named workload the checkpoint will
	// hold, with ManifestFromImages: the agent builds its rootfs and
	// sandbox while it waits. The manifest has the last word.
	Workload string   `json:"workload,omitempty"`
	Command  []string `json:"command,omitempty"`
}

// ImagesReady is the Data of the result event a checkpoint job sends after
// a successful dump: the manifest of the images (without the file list,
// which the host computes) that follow on the DataPort as a tar stream.
type ImagesReady struct {
	Manifest images.Manifest `json:"manifest"`
	// Bytes is the size of the files that follow, for progress.
	Bytes int64 `json:"bytes,omitempty"`
}

// BenchResult is the Data of the result event of a checkpoint job with
// Bench: kata-cr's dump and restore of the workload next to raw criu's.
type BenchResult struct {
	Workload       string   `json:"workload"`
	KataCRDump     float64  `json:"katacr_dump_seconds"`
	KataCRRestore  float64  `json:"katacr_restore_seconds"`
	RawDump        float64  `json:"raw_dump_seconds"`
	RawRestore     float64  `json:"raw_restore_seconds"`
	RawDumpCommand []string `json:"raw_dump_command"`
}

// StageReceiveImages is the stage of the progress event with which a
// restore job asks the host for the images.
const StageReceiveImages = "receive-images"

// MaxPreDumps bounds CheckpointOptions.PreDumps: each pre-dump keeps a
// copy of the pages it wrote in the guest's memory.
const MaxPreDumps = 8

// StageFreeze is the stage of the progress event a checkpoint job sends
// right before its final dump freezes the tree, and StageRestored the one
// a restore job sends as soon as CRIU's restore ended: the host times the
// downtime between the two, on its own clock.
const (
	StageFreeze   = "freeze"
	StageRestored = "restored"
)

// ResultImages and ResultBench tag the result events of a checkpoint job
// (Event.Stage).
const (
	ResultImages = "images"
	ResultBench  = "bench"
)

// ImagesSaved is the host's answer to the images of a checkpoint job: OK
// when they are in Dir, complete and synced; otherwise Error says why not,
// and the agent puts a workload the dump stopped back in place from its
// own copy of the images.
type ImagesSaved struct {
	OK    bool   `json:"ok"`
	Dir   string `json:"dir,omitempty"`
	Error string `json:"error,omitempty"`
}

// Fault is a failure a checkpoint job injects into itself.
type Fault string

// FaultKillCRIU kills CRIU (SIGKILL) in the middle of the dump, at its
// post-dump notification, while it holds the tree stopped.
const FaultKillCRIU Fault = "kill-criu-during-dump"
