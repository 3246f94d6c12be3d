package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/kata-cr/kata-cr/images"
)

// Baseline records a rootfs as it was before the container ran, so that
// what the container changed can travel with its checkpoint: the files a
// workload holds open must exist again, with the same size, when CRIU
// restores it on a freshly prepared rootfs in another guest.
type Baseline struct {
	entries map[string]entryState
	// upper is the upper layer of an overlay root (a bundle's): what the
	// container changed is there, and the shared tree is not walked.
	upper string
}

type entryState struct {
	mode  fs.FileMode
	size  int64
	ino   uint64
	ctime syscall.Timespec
	link  string
	// rdev is a device node's device number.
	rdev uint64
}

// TakeBaseline records every entry of rootfs; take it after PrepareRootfs
// and before Start.
func TakeBaseline(rootfs string) (*Baseline, error) {
	if up := overlayUpper(rootfs); up != "" {
		return &Baseline{upper: up}, nil
	}
	entries, err := scanRootfs(rootfs)
	if err != nil {
		return nil, fmt.Errorf("record rootfs %s: %w", rootfs, err)
	}
	return &Baseline{entries: entries}, nil
}

func scanRootfs(rootfs string) (map[string]entryState, error) {
	out := map[string]entryState{}
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(rootfs, p)
		if err != nil || rel == "." {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		t := fi.Mode().Type()
		if t&fs.ModeSocket != 0 {
			// A socket file cannot be carried in a tar, and CRIU binds
			// the sockets it restores again, which makes their files.
			return nil
		}
		st := entryState{mode: fi.Mode(), size: fi.Size()}
		if s, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.ino, st.ctime, st.rdev = s.Ino, s.Ctim, s.Rdev
		}
		if t == fs.ModeSymlink {
			if st.link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = st
		return nil
	})
	return out, err
}

// RootfsDiff is what a container changed in its rootfs: paths relative to
// the rootfs, slash-separated.
type RootfsDiff struct {
	// Changed lists new and modified files, symlinks and directories.
	Changed []string `json:"changed"`
	// Deleted lists what the container removed.
	Deleted []string `json:"deleted"`
}

// Diff compares rootfs now with the baseline. A file counts as changed
// when its size, inode, ctime or device number moved (a workload cannot
// forge ctime), a directory only when it is new or its mode changed. FIFOs
// and device nodes count like files: a restored process that holds one
// open finds it again by its path.
func (b *Baseline) Diff(rootfs string) (*RootfsDiff, error) {
	if b.upper != "" {
		return scanUpper(b.upper)
	}
	now, err := scanRootfs(rootfs)
	if err != nil {
		return nil, fmt.Errorf("diff rootfs %s: %w", rootfs, err)
	}
	d := &RootfsDiff{Changed: []string{}, Deleted: []string{}}
	for p, n := range now {
		o, ok := b.entries[p]
		switch {
		case !ok:
			d.Changed = append(d.Changed, p)
		case n.mode != o.mode:
			d.Changed = append(d.Changed, p)
		case n.mode.IsDir():
		case n.size != o.size || n.ino != o.ino || n.ctime != o.ctime || n.link != o.link || n.rdev != o.rdev:
			d.Changed = append(d.Changed, p)
		}
	}
	for p := range b.entries {
		if _, ok := now[p]; !ok {
			d.Deleted = append(d.Deleted, p)
		}
	}
	sort.Strings(d.Changed)
	sort.Strings(d.Deleted)
	return d, nil
}

// WriteRootfsDiff writes the diff into dir as images.RootfsDiffName (a tar
// of the changed entries) and images.DeletedFilesName (a JSON array), the
// files podman keeps beside a checkpoint.
func WriteRootfsDiff(dir, rootfs string, d *RootfsDiff) error {
	f, err := os.OpenFile(filepath.Join(dir, images.RootfsDiffName), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write rootfs diff: %w", err)
	}
	if err := images.WriteTarFiles(f, rootfs, d.Changed); err != nil {
		f.Close()
		return fmt.Errorf("write rootfs diff: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write rootfs diff: %w", err)
	}
	deleted := d.Deleted
	if deleted == nil {
		deleted = []string{}
	}
	data, err := json.Marshal(deleted)
	if err != nil {
		return fmt.Errorf("write deleted files: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, images.DeletedFilesName), data, 0o600); err != nil {
		return fmt.Errorf("write deleted files: %w", err)
	}
	return nil
}

// ApplyRootfsDiff replays on a freshly prepared rootfs what WriteRootfsDiff
// saved in dir: it removes the deleted paths and extracts the changed
// entries. Either file may be missing (nothing to replay).
func ApplyRootfsDiff(dir, rootfs string) error {
	data, err := os.ReadFile(filepath.Join(dir, images.DeletedFilesName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("apply rootfs diff: %w", err)
	}
	if err == nil {
		var deleted []string
		if err := json.Unmarshal(data, &deleted); err != nil {
			return fmt.Errorf("apply rootfs diff: %s: %w", images.DeletedFilesName, err)
		}
		for _, p := range deleted {
			if !relativeInside(p) {
				return fmt.Errorf("apply rootfs diff: deleted path %q is not a relative path inside the rootfs", p)
			}
			full, err := inRoot(rootfs, p)
			if err != nil {
				return fmt.Errorf("apply rootfs diff: %w", err)
			}
			if full == filepath.Clean(rootfs) {
				return fmt.Errorf("apply rootfs diff: refusing to delete the rootfs itself")
			}
			if err := os.RemoveAll(full); err != nil {
				return fmt.Errorf("apply rootfs diff: %w", err)
			}
		}
	}
	f, err := os.Open(filepath.Join(dir, images.RootfsDiffName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("apply rootfs diff: %w", err)
	}
	defer f.Close()
	if err := images.ExtractTarSpecial(f, rootfs); err != nil {
		return fmt.Errorf("apply rootfs diff: %w", err)
	}
	return nil
}

// relativeInside reports whether p is relative and has no ".." component:
// Diff never writes anything else.
func relativeInside(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return false
		}
	}
	return true
}
