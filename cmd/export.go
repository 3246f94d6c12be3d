package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/images/archive"
	"github.com/kata-cr/kata-cr/reports"
)

// The checkpoint archive: kata-cr checkpoint --export FILE.tar writes the
// saved checkpoint in the layout checkpointctl, CRI-O and containerd read
// (images/archive); kata-cr restore --import FILE.tar restores one.

// exportFindingID is the finding of --export.
const exportFindingID = "checkpoint.export"

// checkExportTarget fails before any boot when the archive could not be
// written: the file exists, or its directory is missing or not writable.
// It returns the absolute path.
func checkExportTarget(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("--export %s: %v", p, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", usagef("--export %s: the file exists: give a new file name (an export never overwrites)", p)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", usagef("--export %s: %v", p, errors.Unwrap(err))
	}
	dir := filepath.Dir(abs)
	probe, err := os.CreateTemp(dir, ".kata-cr-probe-")
	if err != nil {
		return "", usagef("--export %s: cannot write in %s: %v", p, dir, errors.Unwrap(err))
	}
	probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return "", fmt.Errorf("remove the write probe: %w", err)
	}
	return abs, nil
}

// exportCheckpoint writes the saved checkpoint set to the archive dst and
// says so in r: the checkpoint's Archive and a checkpoint.export finding,
// an error (the run fails) when the archive could not be written.
func exportCheckpoint(r *reports.Report, set *images.Set, dst string) {
	f := reports.Finding{ID: exportFindingID, Category: "checkpoint", Level: reports.Required}
	n, err := archive.Export(set, dst)
	if err != nil {
		f.Status, f.Summary, f.Reason = reports.Error, "the checkpoint archive was not written", err.Error()
		f.Evidence = []string{"images: " + set.Dir}
	} else {
		f.Status = reports.Pass
		f.Summary = fmt.Sprintf("exported the checkpoint to %s (%d bytes), the layout checkpointctl, CRI-O and containerd read", dst, n)
		f.Evidence = []string{"images: " + set.Dir, "archive: " + dst}
		r.Checkpoint.Archive = dst
	}
	r.Findings = append(r.Findings, f)
}

// importArchive extracts the archive src for a restore: into dir when it
// is given (kept afterwards), else into a new 0700 directory that cleanup
// removes. A damaged or tampered archive is refused (*images.RefusedError,
// exit 1) before anything boots.
func importArchive(src, dir string) (set *images.Set, cleanup func(), err error) {
	cleanup = func() {}
	if fi, err := os.Stat(src); err != nil {
		return nil, cleanup, usagef("--import %s: %v", src, errors.Unwrap(err))
	} else if !fi.Mode().IsRegular() {
		return nil, cleanup, usagef("--import %s: not a regular file: give the archive kata-cr checkpoint --export wrote", src)
	}
	if dir == "" {
		parent, err := os.MkdirTemp("", "kata-cr-import-")
		if err != nil {
			return nil, cleanup, fmt.Errorf("import %s: %w", src, err)
		}
		cleanup = func() { os.RemoveAll(parent) }
		dir = filepath.Join(parent, "images")
	}
	set, err = archive.Import(src, dir)
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	return set, cleanup, nil
}

// openSet opens the checkpoint of a restore: the archive of --import,
// extracted, or the directory of --images-dir. cleanup removes what the
// import extracted into a directory of its own.
func (o *restoreCmdOptions) openSet() (*images.Set, func(), error) {
	if o.Import != "" {
		return importArchive(o.Import, o.ImagesDir)
	}
	set, err := openCheckpoint(o.ImagesDir)
	return set, func() {}, err
}
