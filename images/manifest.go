// Package images keeps checkpoint images on the host: a directory (0700,
// files 0600) holding CRIU's images, the container's changed files
// (rootfs-diff.tar) and a manifest.json that records where the checkpoint
// was taken (kernel release, CRIU version, architecture), how (workload,
// command, CRIU options, external mounts) and a SHA-256 checksum of every
// file.
//
// A directory only ever appears under its final name complete: Write fills
// DIR.partial-<random> and renames it, so an interrupted or failed checkpoint
// never leaves something that looks like a checkpoint. Open and Verify
// refuse, with a stable reason ID, a directory that is incomplete, damaged
// or taken on another kernel, CRIU or architecture.
//
// The tar helpers stream a directory over the guest's data channel in both
// directions and refuse entries that would land outside the target.
package images

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kata-cr/kata-cr/criu/criuopt"
)

// SchemaVersion is the version of manifest.json that this package writes;
// it changes when a reader of an older version would misread the file.
// Version 2 stores the CRIU options typed (criu_dump, criu_restore);
// version 1 stored them as argv words (dump_options, restore_options),
// which Open still reads.
const SchemaVersion = 2

// ManifestName is the manifest's file name inside an images directory.
const ManifestName = "manifest.json"

// RootfsDiffName is the tar of the container's changed files, podman's name
// for it.
const RootfsDiffName = "rootfs-diff.tar"

// DeletedFilesName lists (as a JSON array) the rootfs paths the container
// deleted, podman's name for it.
const DeletedFilesName = "deleted.files"

// Manifest describes one checkpoint.
type Manifest struct {
	// SchemaVersion is the version the file was written with; Open reads
	// an older one into this version's fields.
	SchemaVersion int `json:"schema_version"`
	// Complete is set by Write as the last thing before the directory gets
	// its final name.
	Complete      bool      `json:"complete"`
	Created       time.Time `json:"created"`
	KataCRVersion string    `json:"kata_cr_version"`

	// Where the dump ran: a restore must match all three.
	KernelRelease string `json:"kernel_release"`
	CRIUVersion   string `json:"criu_version"`
	Arch          string `json:"arch"`

	// What was dumped.
	Workload string   `json:"workload"`
	Command  []string `json:"command,omitempty"`
	Terminal bool     `json:"terminal,omitempty"`
	Setsid   bool     `json:"setsid,omitempty"`
	// Includes are the host files the guest image got (--include, and
	// the workload's own binaries), so that a restore rebuilds the same
	// image without the user repeating them.
	Includes []Include `json:"includes,omitempty"`
	// WorkloadState is what the workload's verification needs after the
	// restore, such as the counter's value at dump time.
	WorkloadState map[string]string `json:"workload_state,omitempty"`
	// Bundle is the user's OCI bundle the container ran from (--bundle),
	// so that a restore shares the same rootfs again; nil for a named
	// workload or a command.
	Bundle *Bundle `json:"bundle,omitempty"`
	// VerifyExec are the commands that verify the restored container
	// (--verify-exec); a later kata-cr restore runs them again.
	VerifyExec [][]string `json:"verify_exec,omitempty"`

	// How it was dumped: the dump's CRIU options, and those its restore
	// needs too (besides the root and the external mounts, which depend
	// on the restoring side).
	DumpOptions    criuopt.Set     `json:"criu_dump,omitzero"`
	RestoreOptions criuopt.Set     `json:"criu_restore,omitzero"`
	ExternalMounts []ExternalMount `json:"external_mounts,omitempty"`

	// Files lists every file of the directory except the manifest.
	Files []File `json:"files"`
}

// ExternalMount is a mount CRIU saved by reference only: the restore maps
// Key back to a source on the restoring side.
type ExternalMount struct {
	Key string `json:"key"`
	// Target is the mount point inside the container.
	Target string `json:"target"`
}

// Include is one host file added to the guest image.
type Include struct {
	// Host is the absolute path on the host; Guest the path in the guest.
	Host  string `json:"host"`
	Guest string `json:"guest"`
	// SHA256 is the checksum of the host file when the checkpoint was
	// taken: the restoring guest must run the same binary.
	SHA256 string `json:"sha256"`
}

// File is one file of an images directory.
type File struct {
	// Name is the slash-separated path relative to the directory.
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Compat is what the restoring side runs: a checkpoint restores only where
// all three match the manifest.
type Compat struct {
	KernelRelease string
	CRIUVersion   string
	Arch          string
}

// schema1 is what version 1 of the manifest stored in another form: the
// CRIU options as criu command-line words.
type schema1 struct {
	DumpOptions    []string `json:"dump_options"`
	RestoreOptions []string `json:"restore_options"`
}

// readSchema1 sets m's CRIU options from data, a version 1 manifest.
func (m *Manifest) readSchema1(data []byte) error {
	var old schema1
	if err := json.Unmarshal(data, &old); err != nil {
		return err
	}
	var err error
	if m.DumpOptions, err = criuopt.ParseDump(old.DumpOptions); err != nil {
		return fmt.Errorf("dump_options: %w", err)
	}
	if m.RestoreOptions, err = criuopt.ParseRestore(old.RestoreOptions); err != nil {
		return fmt.Errorf("restore_options: %w", err)
	}
	return nil
}
