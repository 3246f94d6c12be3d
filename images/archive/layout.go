// Package archive turns a kata-cr checkpoint (an images directory) into
// one tar file with the layout the kubelet checkpoint API, CRI-O,
// containerd and checkpointctl use, and back:
//
//	kata-cr-manifest.json  kata-cr's manifest: every file with its size and SHA-256
//	config.dump            the container's metadata (JSON)
//	spec.dump              the container's OCI runtime spec (JSON)
//	checkpoint/            CRIU's images (*.img)
//	rootfs-diff.tar        the container's changed files
//	deleted.files          the files the container deleted (JSON array)
//	stats-dump             CRIU's dump statistics
//	dump.log               CRIU's dump log
//
// Import extracts an archive into a new 0700 directory only as the
// manifest lists it: every other entry, a path that leaves the directory, a
// link, a device node or a file larger or different than the manifest says
// refuses the archive.
package archive

import (
	"fmt"
	"path"
	"strings"

	"github.com/kata-cr/kata-cr/images"
)

// The names of the archive's entries.
const (
	// ManifestName is kata-cr's manifest; Export writes it first.
	ManifestName = "kata-cr-manifest.json"
	// ConfigDumpName and SpecDumpName are the container's metadata as
	// checkpointctl reads it.
	ConfigDumpName = "config.dump"
	SpecDumpName   = "spec.dump"
	// CheckpointDir holds CRIU's images.
	CheckpointDir = "checkpoint"
	// StatsDumpName and DumpLogName are CRIU's statistics and log, at the
	// top of the archive (CRIU writes both into its images directory).
	StatsDumpName = "stats-dump"
	DumpLogName   = "dump.log"
)

// topLevel are the files of an images directory that the layout keeps at
// the top of the archive; every other file goes under checkpoint/.
var topLevel = map[string]bool{
	images.RootfsDiffName:   true,
	images.DeletedFilesName: true,
	DumpLogName:             true,
	StatsDumpName:           true,
}

// archiveName is where the file name (relative to the images directory)
// goes in the archive.
func archiveName(name string) string {
	if topLevel[name] {
		return name
	}
	return CheckpointDir + "/" + name
}

// checkName refuses a name that is not a clean relative path of plain
// components: absolute, empty, ".", ".." or a doubled slash.
func checkName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name {
		return fmt.Errorf("%q is not a clean relative path", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "." || part == ".." {
			return fmt.Errorf("%q leaves the directory", name)
		}
	}
	return nil
}
