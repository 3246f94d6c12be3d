package cmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// outputFile is the report file of --output-file: the command writes into a
// temporary file beside it, which replaces the file only once the report is
// complete. A reader (node_exporter's textfile collector) never sees a
// half-written file, and a run that produced no report leaves the previous
// file in place.
type outputFile struct {
	path string
	tmp  *os.File
}

// outputFileMode is the mode of the file written: node_exporter runs as
// another user and must read it.
const outputFileMode = 0o644

// openOutputFile starts writing the report for path; its directory must
// exist.
func openOutputFile(path string) (*outputFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, usagef("--output-file %s: %v", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, usagef("--output-file %s: is a directory: give a file name", path)
	}
	dir := filepath.Dir(abs)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".tmp-")
	if err != nil {
		return nil, usagef("--output-file %s: cannot write in %s: %v", path, dir, errors.Unwrap(err))
	}
	return &outputFile{path: abs, tmp: tmp}, nil
}

// finish renames the temporary file onto the report file when the command
// rendered its report (it succeeded, or a required check failed), else
// removes it. It returns the command's error, or the one of finishing.
func (o *outputFile) finish(cmdErr error) error {
	keep := cmdErr == nil || errors.Is(cmdErr, errCheckFailed)
	if !keep {
		o.discard()
		return cmdErr
	}
	if err := o.commit(); err != nil {
		o.discard()
		return fmt.Errorf("write --output-file %s: %w", o.path, err)
	}
	return cmdErr
}

func (o *outputFile) commit() error {
	if err := o.tmp.Chmod(outputFileMode); err != nil {
		return err
	}
	if err := o.tmp.Sync(); err != nil {
		return err
	}
	if err := o.tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(o.tmp.Name(), o.path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(o.path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (o *outputFile) discard() {
	o.tmp.Close()
	os.Remove(o.tmp.Name())
}
