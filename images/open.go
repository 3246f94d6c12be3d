package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kata-cr/kata-cr/internal/safefile"
)

// The reasons a checkpoint is refused. They are stable: reports and tests
// match on them.
const (
	ReasonIncomplete     = "images.incomplete"
	ReasonManifest       = "images.manifest-invalid"
	ReasonSchema         = "images.schema-unsupported"
	ReasonMissingFile    = "images.missing-file"
	ReasonTruncated      = "images.truncated"
	ReasonChecksum       = "images.checksum"
	ReasonUnexpectedFile = "images.unexpected-file"
	ReasonKernelMismatch = "images.kernel-mismatch"
	ReasonCRIUMismatch   = "images.criu-mismatch"
	ReasonArchMismatch   = "images.arch-mismatch"
	ReasonNotImagesDir   = "images.not-found"
	ReasonIncludeChanged = "images.include-changed"
	ReasonIncludeMissing = "images.include-missing"
)

// manifestSizeLimit bounds what Open reads: a manifest lists a few dozen
// files.
const manifestSizeLimit = 16 << 20

// Problem is one reason to refuse a checkpoint.
type Problem struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// RefusedError says why a checkpoint cannot be restored. Problems has at
// least one entry; the first is the one to show.
type RefusedError struct {
	Dir      string
	Problems []Problem
}

func (e *RefusedError) Error() string {
	p := e.Problems[0]
	msg := fmt.Sprintf("images %s refused (%s): %s", e.Dir, p.Reason, p.Message)
	if n := len(e.Problems) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more problem(s))", n)
	}
	return msg
}

// Reason is the first problem's reason ID.
func (e *RefusedError) Reason() string { return e.Problems[0].Reason }

// HasReason reports whether any problem has the reason ID.
func (e *RefusedError) HasReason(id string) bool {
	for _, p := range e.Problems {
		if p.Reason == id {
			return true
		}
	}
	return false
}

func refuse(dir, reason, format string, args ...any) *RefusedError {
	return &RefusedError{Dir: dir, Problems: []Problem{{Reason: reason, Message: fmt.Sprintf(format, args...)}}}
}

// Set is an images directory with a complete manifest.
type Set struct {
	Dir      string
	Manifest Manifest
}

// Open reads the manifest of an images directory. It refuses (with a
// *RefusedError) a directory that Write has not finished: a partial one,
// one without a manifest, or one whose manifest is not marked complete.
func Open(dir string) (*Set, error) {
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, refuse(dir, ReasonNotImagesDir, "the directory does not exist: give the --images-dir of a checkpoint")
	}
	if err != nil {
		return nil, fmt.Errorf("open images %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, refuse(dir, ReasonNotImagesDir, "not a directory: give the --images-dir of a checkpoint")
	}
	if strings.Contains(filepath.Base(dir), partialInfix) {
		return nil, refuse(dir, ReasonIncomplete, "a checkpoint that was never finished (its name contains %q)", partialInfix)
	}
	p := filepath.Join(dir, ManifestName)
	mfi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, refuse(dir, ReasonIncomplete, "no %s: the checkpoint was never finished, or this is not an images directory", ManifestName)
	}
	if err != nil {
		return nil, fmt.Errorf("open images %s: %w", dir, err)
	}
	if !mfi.Mode().IsRegular() {
		return nil, refuse(dir, ReasonManifest, "%s is %s, not a regular file", ManifestName, safefile.Kind(mfi.Mode()))
	}
	if mfi.Size() > manifestSizeLimit {
		return nil, refuse(dir, ReasonManifest, "%s is %d bytes, larger than any manifest", ManifestName, mfi.Size())
	}
	data, err := safefile.Read(p, manifestSizeLimit)
	switch {
	case errors.Is(err, safefile.ErrNotRegular), errors.Is(err, safefile.ErrTooLarge):
		return nil, refuse(dir, ReasonManifest, "%s: %v", ManifestName, err)
	case err != nil:
		return nil, fmt.Errorf("open images %s: %w", dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, refuse(dir, ReasonManifest, "%s: %v", ManifestName, err)
	}
	if m.SchemaVersion > SchemaVersion || m.SchemaVersion < 1 {
		return nil, refuse(dir, ReasonSchema, "manifest schema version %d: this kata-cr reads versions 1 to %d", m.SchemaVersion, SchemaVersion)
	}
	if m.SchemaVersion == 1 {
		if err := m.readSchema1(data); err != nil {
			return nil, refuse(dir, ReasonManifest, "%s (schema version 1): %v", ManifestName, err)
		}
	}
	if !m.Complete {
		return nil, refuse(dir, ReasonIncomplete, "the manifest is not marked complete")
	}
	return &Set{Dir: dir, Manifest: m}, nil
}

// CheckCompat compares where the checkpoint was taken with want. An empty
// field of want is a mismatch too: a restore must know what it runs.
func CheckCompat(m Manifest, want Compat) []Problem {
	var out []Problem
	if m.KernelRelease != want.KernelRelease {
		out = append(out, Problem{ReasonKernelMismatch, fmt.Sprintf("dumped on kernel %q, restoring on %q: restore on the kernel the checkpoint was taken on", m.KernelRelease, want.KernelRelease)})
	}
	if m.CRIUVersion != want.CRIUVersion {
		out = append(out, Problem{ReasonCRIUMismatch, fmt.Sprintf("dumped with CRIU %q, restoring with %q: restore with the same CRIU", m.CRIUVersion, want.CRIUVersion)})
	}
	if m.Arch != want.Arch {
		out = append(out, Problem{ReasonArchMismatch, fmt.Sprintf("dumped on %q, restoring on %q: a checkpoint only restores on its own architecture", m.Arch, want.Arch)})
	}
	return out
}

// Verify refuses the checkpoint (with a *RefusedError listing every
// problem) when it was taken on another kernel, CRIU or architecture than
// want, or when a file is missing, truncated, altered or unexpected. The
// cheap comparisons come first so that a restore can refuse early.
func (s *Set) Verify(want Compat) error {
	problems := CheckCompat(s.Manifest, want)
	problems = append(problems, s.checkFiles()...)
	if len(problems) == 0 {
		return nil
	}
	return &RefusedError{Dir: s.Dir, Problems: problems}
}

// VerifyFiles checks the files against the manifest only.
func (s *Set) VerifyFiles() error {
	if problems := s.checkFiles(); len(problems) > 0 {
		return &RefusedError{Dir: s.Dir, Problems: problems}
	}
	return nil
}

func (s *Set) checkFiles() []Problem {
	var out []Problem
	if missing := missingCRIUImages(s.Manifest.Files); len(missing) > 0 {
		out = append(out, Problem{ReasonMissingFile, fmt.Sprintf("the manifest lists no %s: not a CRIU checkpoint", strings.Join(missing, " or "))})
	}
	listed := make(map[string]bool, len(s.Manifest.Files))
	for _, f := range s.Manifest.Files {
		listed[f.Name] = true
		name, err := cleanName(f.Name)
		if err != nil || name != f.Name {
			out = append(out, Problem{ReasonManifest, fmt.Sprintf("file name %q in the manifest is not a clean relative path", f.Name)})
			continue
		}
		p := filepath.Join(s.Dir, filepath.FromSlash(name))
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			out = append(out, Problem{ReasonMissingFile, fmt.Sprintf("%s is missing", f.Name)})
			continue
		}
		if err != nil {
			out = append(out, Problem{ReasonMissingFile, fmt.Sprintf("%s: %v", f.Name, err)})
			continue
		}
		if !fi.Mode().IsRegular() {
			out = append(out, Problem{ReasonChecksum, fmt.Sprintf("%s is not a regular file", f.Name)})
			continue
		}
		if fi.Size() < f.Size {
			out = append(out, Problem{ReasonTruncated, fmt.Sprintf("%s is truncated: %d of %d bytes", f.Name, fi.Size(), f.Size)})
			continue
		}
		got, err := sumFile(p, false)
		if err != nil {
			out = append(out, Problem{ReasonChecksum, fmt.Sprintf("%s: %v", f.Name, err)})
			continue
		}
		if got.Size != f.Size || got.SHA256 != f.SHA256 {
			out = append(out, Problem{ReasonChecksum, fmt.Sprintf("%s does not match its checksum (sha256 %s, manifest says %s)", f.Name, short(got.SHA256), short(f.SHA256))})
		}
	}
	var extra []string
	_ = filepath.WalkDir(s.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(s.Dir, p)
		rel = filepath.ToSlash(rel)
		if rel != ManifestName && !listed[rel] {
			extra = append(extra, rel)
		}
		return nil
	})
	sort.Strings(extra)
	for _, name := range extra {
		out = append(out, Problem{ReasonUnexpectedFile, fmt.Sprintf("%s is not in the manifest", name)})
	}
	return out
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

// Path is the path of a file of the set.
func (s *Set) Path(name string) string { return filepath.Join(s.Dir, filepath.FromSlash(name)) }

// Size is the total size in bytes of the files the manifest lists.
func (s *Set) Size() int64 {
	var n int64
	for _, f := range s.Manifest.Files {
		n += f.Size
	}
	return n
}

// SumFile returns the SHA-256 checksum of the file at p, in hex.
func SumFile(p string) (string, error) {
	f, err := sumFile(p, false)
	if err != nil {
		return "", fmt.Errorf("checksum %s: %w", p, err)
	}
	return f.SHA256, nil
}

// CheckIncludes compares the host files the checkpoint's guest image was
// built with against the host as it is now. host maps a guest path to the
// host file to use instead of the recorded one (the user's own --include
// for that path); a missing or changed file is a problem, since the
// restored process maps the binary it was dumped with.
func CheckIncludes(m Manifest, host map[string]string) []Problem {
	var out []Problem
	for _, inc := range m.Includes {
		p := inc.Host
		if h, ok := host[inc.Guest]; ok {
			p = h
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			why := "it no longer exists"
			if err == nil {
				why = "it is not a regular file any more"
			} else if u := errors.Unwrap(err); u != nil && !errors.Is(err, fs.ErrNotExist) {
				why = u.Error()
			}
			out = append(out, Problem{ReasonIncludeMissing, fmt.Sprintf("the included file %s (%s in the guest) is unusable: %s: put it back, or give its new place with --include NEW_PATH:%s", p, inc.Guest, why, inc.Guest)})
			continue
		}
		sum, err := SumFile(p)
		if err != nil {
			out = append(out, Problem{ReasonIncludeMissing, fmt.Sprintf("the included file %s (%s in the guest): %v", p, inc.Guest, err)})
			continue
		}
		if sum != inc.SHA256 {
			out = append(out, Problem{ReasonIncludeChanged, fmt.Sprintf("the included file %s (%s in the guest) changed since the checkpoint (sha256 %s, the manifest says %s): restore with the file the checkpoint was taken with", p, inc.Guest, short(sum), short(inc.SHA256))})
		}
	}
	return out
}
