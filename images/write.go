package images

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/internal/safefile"
	"golang.org/x/sys/unix"
)

// partialInfix marks a directory that Write has not finished.
const partialInfix = ".partial-"

// Source is where Write takes an images directory's files from.
type Source interface {
	fill(dst string) error
	String() string
}

// FromDir copies the files of dir (for example CRIU's images directory in
// the guest).
func FromDir(dir string) Source { return dirSource(dir) }

// FromTar extracts a tar stream (for example the one the guest agent sends
// over its data channel), with ExtractTar's protections.
func FromTar(r io.Reader) Source { return tarSource{r} }

type dirSource string

func (d dirSource) String() string { return string(d) }

func (d dirSource) fill(dst string) error {
	src := string(d)
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case e.IsDir():
			return os.Mkdir(target, 0o700)
		case e.Type().IsRegular():
			return copyFile(p, target)
		default:
			return fmt.Errorf("%s: not a regular file or directory", p)
		}
	})
}

type tarSource struct{ r io.Reader }

func (tarSource) String() string { return "tar stream" }

func (t tarSource) fill(dst string) error { return ExtractTar(t.r, dst) }

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}

// Write creates the images directory dir from src with manifest m: the
// directory 0700, every file 0600 whatever the umask, and a manifest.json
// listing every file's size and SHA-256. It fills a sibling
// DIR.partial-<random> and renames it to dir only when everything is written and
// synced, so dir never exists incomplete; on failure the partial directory
// is removed. dir must not exist, or be an empty directory.
//
// Write sets m's SchemaVersion, Complete, Files and, when zero, Created.
func Write(dir string, m Manifest, src Source) (*Set, error) {
	dir = filepath.Clean(dir)
	if strings.Contains(filepath.Base(dir), partialInfix) {
		return nil, fmt.Errorf("write images to %s: the name must not contain %q", dir, partialInfix)
	}
	if err := checkTarget(dir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("write images to %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(parent, filepath.Base(dir)+partialInfix)
	if err != nil {
		return nil, fmt.Errorf("write images to %s: cannot create a directory in %s: %w", dir, parent, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("write images to %s: %w", dir, err)
	}
	if err := src.fill(tmp); err != nil {
		return nil, fmt.Errorf("write images to %s from %s: %w", dir, src, err)
	}
	files, err := seal(tmp)
	if err != nil {
		return nil, fmt.Errorf("write images to %s: %w", dir, err)
	}
	if missing := missingCRIUImages(files); len(missing) > 0 {
		// A stream cut before its first file ends like an empty one.
		return nil, fmt.Errorf("write images to %s from %s: no %s: the images did not arrive", dir, src, strings.Join(missing, " or "))
	}
	m.SchemaVersion = SchemaVersion
	m.Complete = true
	m.Files = files
	if m.Created.IsZero() {
		m.Created = time.Now().UTC()
	}
	if err := writeManifest(tmp, &m); err != nil {
		return nil, fmt.Errorf("write images to %s: %w", dir, err)
	}
	if err := syncDir(tmp); err != nil {
		return nil, fmt.Errorf("write images to %s: %w", dir, err)
	}
	// rename(2) replaces an empty directory and fails on a non-empty one,
	// so a directory filled meanwhile is never clobbered. (os.Rename
	// refuses any existing directory.)
	if err := unix.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("write images to %s: rename %s: %w", dir, filepath.Base(tmp), err)
	}
	ok = true
	if err := syncDir(parent); err != nil {
		return nil, fmt.Errorf("write images to %s: %w", dir, err)
	}
	return &Set{Dir: dir, Manifest: m}, nil
}

// checkTarget fails early, before any work, when dir cannot be the target.
func checkTarget(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write images to %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("write images to %s: exists and is not a directory: choose another --images-dir", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("write images to %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("write images to %s: the directory is not empty: choose another --images-dir or remove it", dir)
	}
	return nil
}

// seal sets the final modes, syncs every file and returns the file list
// with checksums, in name order.
func seal(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		switch {
		case e.IsDir():
			return os.Chmod(p, 0o700)
		case e.Type().IsRegular():
			if rel == ManifestName {
				return fmt.Errorf("the source already has a %s", ManifestName)
			}
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
			f, err := sumFile(p, true)
			if err != nil {
				return err
			}
			f.Name = filepath.ToSlash(rel)
			files = append(files, f)
			return nil
		default:
			return fmt.Errorf("%s: not a regular file or directory", rel)
		}
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return files, err
}

func sumFile(p string, sync bool) (File, error) {
	f, err := safefile.Open(p)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, fmt.Errorf("read %s: %w", p, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			return File{}, fmt.Errorf("sync %s: %w", p, err)
		}
	}
	return File{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	p := filepath.Join(dir, ManifestName)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// requiredImages are the files every CRIU dump writes: without them there
// is nothing to restore.
var requiredImages = []string{"inventory.img", "pstree.img"}

// missingCRIUImages lists the requiredImages that files lacks.
func missingCRIUImages(files []File) []string {
	var missing []string
	for _, name := range requiredImages {
		if !slices.ContainsFunc(files, func(f File) bool { return f.Name == name }) {
			missing = append(missing, name)
		}
	}
	return missing
}
