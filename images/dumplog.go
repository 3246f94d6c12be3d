package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// DumpLogSuffix names the file a failed checkpoint leaves CRIU's dump log
// in: beside the images directory it would have filled, so that it is
// found where the checkpoint was looked for, and never inside it, which
// must not look like a checkpoint.
const DumpLogSuffix = ".dump.log"

// DumpLogPath is where WriteDumpLog puts the log of a failed dump into
// imagesDir.
func DumpLogPath(imagesDir string) string {
	return filepath.Clean(imagesDir) + DumpLogSuffix
}

// WriteDumpLog writes CRIU's log of a failed dump beside imagesDir, 0600,
// and returns its path. It replaces an earlier log there, never through a
// symlink, and refuses anything else in the way.
func WriteDumpLog(imagesDir string, log []byte) (string, error) {
	p := DumpLogPath(imagesDir)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("write the dump log: %w", err)
	}
	fi, err := os.Lstat(p)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return "", fmt.Errorf("write the dump log: %s is in the way (%s)", p, fi.Mode().Type())
	case err == nil:
		if err := os.Remove(p); err != nil {
			return "", fmt.Errorf("write the dump log: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("write the dump log: %w", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("write the dump log: %w", err)
	}
	if _, err := f.Write(log); err != nil {
		f.Close()
		return "", fmt.Errorf("write the dump log: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write the dump log: %w", err)
	}
	return p, nil
}
