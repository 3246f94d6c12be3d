package archive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/internal/safefile"
)

// Export writes the checkpoint set to the tar file dst: the manifest
// first, config.dump and spec.dump, then every file the manifest lists, in
// the layout above. Every file is checked against the manifest first (a
// damaged checkpoint is not exported). The archive is written to a
// temporary file beside dst, synced and renamed onto dst, so dst never
// exists half-written; it is 0600 (it holds the workload's memory), and
// Export refuses to replace an existing dst. It returns the archive's size.
func Export(set *images.Set, dst string) (int64, error) {
	if err := set.VerifyFiles(); err != nil {
		return 0, fmt.Errorf("export %s: %w", set.Dir, err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, fmt.Errorf("export to %s: the file exists: choose another name", dst)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	manifest, err := safefile.Read(set.Path(images.ManifestName), manifestSizeLimit)
	if err != nil {
		return 0, fmt.Errorf("export %s: %w", set.Dir, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeArchive(tmp, set, manifest); err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	// link(2) fails when dst exists: a file made meanwhile is never
	// replaced.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	ok = true
	os.Remove(tmp.Name())
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return 0, fmt.Errorf("export to %s: %w", dst, err)
	}
	return fi.Size(), nil
}

func writeArchive(w io.Writer, set *images.Set, manifest []byte) error {
	m := set.Manifest
	id := containerID(manifest)
	config, err := json.MarshalIndent(configDump(m, id), "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", ConfigDumpName, err)
	}
	spec, err := json.MarshalIndent(specDump(m), "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", SpecDumpName, err)
	}
	tw := tar.NewWriter(w)
	hdr := func(name string, mode int64, size int64, typ byte) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Size: size, Typeflag: typ, ModTime: m.Created, Format: tar.FormatPAX}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{ManifestName, manifest}, {ConfigDumpName, config}, {SpecDumpName, spec}} {
		if err := tw.WriteHeader(hdr(f.name, 0o600, int64(len(f.data)), tar.TypeReg)); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	written := map[string]bool{}
	for _, f := range m.Files {
		if err := checkName(f.Name); err != nil {
			return fmt.Errorf("the manifest's file %w", err)
		}
		name := archiveName(f.Name)
		// The directories above the file, outermost first, each once.
		var parents []string
		for d := path.Dir(name); d != "." && !written[d]; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if err := tw.WriteHeader(hdr(d+"/", 0o700, 0, tar.TypeDir)); err != nil {
				return err
			}
			written[d] = true
		}
		if err := writeFile(tw, hdr(name, 0o600, f.Size, tar.TypeReg), set.Path(f.Name)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeFile writes the file at p as the entry h; its size must still be
// h.Size.
func writeFile(tw *tar.Writer, h *tar.Header, p string) error {
	f, err := safefile.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, h.Size))
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if n != h.Size {
		return fmt.Errorf("%s: %d of %d bytes: the file changed during the export", p, n, h.Size)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
