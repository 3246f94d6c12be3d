package archive

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/images"
)

// The reasons Import refuses an archive, besides images' own (a checksum,
// a truncated or missing file, a bad manifest). They are stable.
const (
	ReasonNotArchive      = "archive.not-an-archive"
	ReasonUnsafeEntry     = "archive.unsafe-entry"
	ReasonUnexpectedEntry = "archive.unexpected-entry"
	ReasonTooLarge        = "archive.too-large"
)

// The size limits of what Import reads besides the files the manifest
// lists: the manifest lists a few dozen files, and checkpointctl's
// metadata files are a few KiB.
const (
	manifestSizeLimit = 16 << 20
	metadataSizeLimit = 16 << 20
	fileCountLimit    = 1 << 16
)

// Import extracts the archive src, written by Export, into dir (created
// 0700; it must not exist, or be empty) as the images directory it came
// from, and opens it. The manifest must be the first entry; every other
// entry must be a directory above a listed file, a listed file of exactly
// the listed size and checksum, config.dump or spec.dump (read and
// dropped: the manifest is what restores). Anything else refuses the
// archive with a *images.RefusedError naming the entry: an absolute path
// or "..", a symlink, hard link, device node or FIFO, an entry the
// manifest does not list, a file that differs from the manifest, a file
// listed but absent. What was extracted is removed then. Files are 0600,
// directories 0700.
func Import(src, dir string) (*images.Set, error) {
	created, err := prepareDir(dir)
	if err != nil {
		return nil, fmt.Errorf("import %s into %s: %w", src, dir, err)
	}
	set, err := extract(src, dir)
	if err != nil {
		if created {
			os.RemoveAll(dir)
		} else {
			clearDir(dir)
		}
		return nil, err
	}
	return set, nil
}

// prepareDir creates dir 0700, or checks that it is an empty directory.
func prepareDir(dir string) (created bool, err error) {
	err = os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("%s is not empty", dir)
	}
	return false, os.Chmod(dir, 0o700)
}

func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// importer is the state of one extraction.
type importer struct {
	src, dir string
	// want maps an archive name to the manifest's file; got marks those
	// extracted; dirs are the directories above them.
	want map[string]images.File
	got  map[string]bool
	dirs map[string]bool
	// metadata marks config.dump and spec.dump once read.
	metadata map[string]bool
}

func (im *importer) refuse(reason, format string, args ...any) error {
	return &images.RefusedError{Dir: im.src, Problems: []images.Problem{{Reason: reason, Message: fmt.Sprintf(format, args...)}}}
}

func extract(src, dir string) (*images.Set, error) {
	im := &importer{src: src, dir: dir, got: map[string]bool{}, dirs: map[string]bool{}, metadata: map[string]bool{}}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, im.refuse(ReasonNotArchive, "not a regular file")
	}
	tr := tar.NewReader(bufio.NewReader(f))
	manifest, err := im.readManifest(tr, fi.Size())
	if err != nil {
		return nil, err
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, im.refuse(images.ReasonTruncated, "the archive is cut or damaged after %d of %d files: %v", len(im.got), len(im.want), err)
		}
		if err := im.entry(hdr, tr); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(im.want) {
		if !im.got[name] {
			return nil, im.refuse(images.ReasonMissingFile, "%s is missing from the archive", name)
		}
	}
	if err := writeNew(filepath.Join(dir, images.ManifestName), manifest); err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	// Every listed file was checked as it was written, and nothing else
	// was: the manifest's own checks (schema, completeness) remain.
	return images.Open(dir)
}

// readManifest reads the first entry, kata-cr's manifest, and what it
// lists.
func (im *importer) readManifest(tr *tar.Reader, archiveSize int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		return nil, im.refuse(ReasonNotArchive, "not a tar archive: %v", err)
	}
	if hdr.Name != ManifestName || hdr.Typeflag != tar.TypeReg {
		return nil, im.refuse(ReasonNotArchive, "the first entry is %q, not kata-cr's %s: not an archive kata-cr exported", hdr.Name, ManifestName)
	}
	if hdr.Size > manifestSizeLimit {
		return nil, im.refuse(ReasonTooLarge, "%s is %d bytes, larger than any manifest", ManifestName, hdr.Size)
	}
	data, err := io.ReadAll(io.LimitReader(tr, hdr.Size))
	if err != nil || int64(len(data)) != hdr.Size {
		return nil, im.refuse(images.ReasonTruncated, "the archive ends inside %s", ManifestName)
	}
	var m images.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, im.refuse(images.ReasonManifest, "%s: %v", ManifestName, err)
	}
	if len(m.Files) > fileCountLimit {
		return nil, im.refuse(ReasonTooLarge, "%s lists %d files, more than a checkpoint has", ManifestName, len(m.Files))
	}
	im.want = make(map[string]images.File, len(m.Files))
	var total int64
	for _, f := range m.Files {
		if err := checkName(f.Name); err != nil {
			return nil, im.refuse(ReasonUnsafeEntry, "%s lists the file %v", ManifestName, err)
		}
		name := archiveName(f.Name)
		if _, dup := im.want[name]; dup || name == ManifestName || name == ConfigDumpName || name == SpecDumpName {
			return nil, im.refuse(images.ReasonManifest, "%s lists %s twice", ManifestName, name)
		}
		if f.Size < 0 {
			return nil, im.refuse(images.ReasonManifest, "%s lists %s with size %d", ManifestName, f.Name, f.Size)
		}
		total += f.Size
		im.want[name] = f
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			im.dirs[d] = true
		}
	}
	// An uncompressed tar holds its files' bytes: a manifest that lists
	// more than the archive's size cannot be this archive's.
	if total > archiveSize {
		return nil, im.refuse(ReasonTooLarge, "%s lists %d bytes of files, more than the archive's %d bytes", ManifestName, total, archiveSize)
	}
	return data, nil
}

// entry checks one archive entry and extracts it when it is a listed file.
func (im *importer) entry(hdr *tar.Header, r io.Reader) error {
	name := hdr.Name
	if hdr.Typeflag == tar.TypeDir && len(name) > 1 && name[len(name)-1] == '/' {
		name = name[:len(name)-1]
	}
	if err := checkName(name); err != nil {
		return im.refuse(ReasonUnsafeEntry, "entry %v", err)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !im.dirs[name] {
			return im.refuse(ReasonUnexpectedEntry, "directory %s is not in the manifest", name)
		}
		return nil
	case tar.TypeReg:
	case tar.TypeSymlink:
		return im.refuse(ReasonUnsafeEntry, "entry %s is a symlink (to %q): a checkpoint archive holds only files and directories", name, hdr.Linkname)
	case tar.TypeLink:
		return im.refuse(ReasonUnsafeEntry, "entry %s is a hard link (to %q): a checkpoint archive holds only files and directories", name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return im.refuse(ReasonUnsafeEntry, "entry %s is a device node or FIFO: a checkpoint archive holds only files and directories", name)
	default:
		return im.refuse(ReasonUnexpectedEntry, "entry %s has tar type %q: a checkpoint archive holds only files and directories", name, hdr.Typeflag)
	}
	if name == ConfigDumpName || name == SpecDumpName {
		if im.metadata[name] {
			return im.refuse(ReasonUnexpectedEntry, "%s appears twice", name)
		}
		im.metadata[name] = true
		if hdr.Size > metadataSizeLimit {
			return im.refuse(ReasonTooLarge, "%s is %d bytes, larger than any container metadata", name, hdr.Size)
		}
		return nil // tar.Reader skips what is left of the entry
	}
	want, ok := im.want[name]
	if !ok {
		return im.refuse(ReasonUnexpectedEntry, "%s is not in the manifest", name)
	}
	if im.got[name] {
		return im.refuse(ReasonUnexpectedEntry, "%s appears twice", name)
	}
	if hdr.Size != want.Size {
		reason := images.ReasonChecksum
		if hdr.Size < want.Size {
			reason = images.ReasonTruncated
		}
		return im.refuse(reason, "%s is %d bytes, the manifest says %d", name, hdr.Size, want.Size)
	}
	sum, err := im.writeFile(want.Name, r, want.Size)
	if err != nil {
		return err
	}
	if sum != want.SHA256 {
		return im.refuse(images.ReasonChecksum, "%s does not match its checksum in the manifest (sha256 %s, the manifest says %s)", name, short(sum), short(want.SHA256))
	}
	im.got[name] = true
	return nil
}

// writeFile writes size bytes of r to name (relative to the images
// directory), 0600, and returns their SHA-256. Import creates every
// directory on the way itself and never a symlink, so nothing can lead
// outside dir.
func (im *importer) writeFile(name string, r io.Reader, size int64) (string, error) {
	p := filepath.Join(im.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("import %s: %w", im.src, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("import %s: %w", im.src, err)
	}
	defer f.Close()
	h := sha256.New()
	if n, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		return "", im.refuse(images.ReasonTruncated, "the archive ends inside %s: %d of %d bytes", archiveName(name), n, size)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("import %s: %w", im.src, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeNew(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func short(sum string) string {
	if len(sum) > 12 {
		return sum[:12]
	}
	return sum
}

func sortedKeys(m map[string]images.File) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
