package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxInput bounds what Load reads from one file; kernel images are tens of
// megabytes, configs a few hundred kilobytes.
const maxInput = 512 << 20

// Load reads a kernel config from path, telling the kind by content, not by
// name: a plain .config, a gzip'd (or xz, zstd, bzip2) config such as
// /proc/config.gz, a kernel image with an embedded config (IKCONFIG), or a
// directory holding a Kata fragment tree, merged for the host's arch.
func Load(path string) (*Config, error) {
	return LoadArch(path, "")
}

// LoadArch is Load with the arch used for a fragment tree; "" means the
// host's.
func LoadArch(path, arch string) (*Config, error) {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("read kernel config %s: %w: give a .config, a gzip'd config, a kernel image or a Kata fragment directory", path, err)
		}
		return nil, fmt.Errorf("read kernel config %s: %w", path, err)
	}
	if fi.IsDir() {
		return LoadFragments(path, arch)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read kernel config %s: not a regular file", path)
	}
	data, err := readFileLimit(path, maxInput)
	if err != nil {
		return nil, fmt.Errorf("read kernel config: %w", err)
	}
	return FromBytes(data, path)
}

func readFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB: not a kernel config or image", path, limit>>20)
	}
	return data, nil
}

// FromBytes parses the content of a config file, a compressed config or a
// kernel image; source names it in the Config and in errors.
func FromBytes(data []byte, source string) (*Config, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty: give a kernel .config, a config.gz, a kernel image built with IKCONFIG or a Kata fragment directory", source)
	}
	// A compressed file is a config.gz or a compressed image (arm64's
	// Image.gz); either way its content decides.
	if kind := compressionAt(data, 0); kind != "" {
		out, err := decompress(kind, data, ratioLimit(len(data)), true)
		if err != nil {
			return nil, fmt.Errorf("%s: %s data is corrupt: %w", source, kind, err)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s: %s data decompresses to nothing", source, kind)
		}
		if looksLikeText(out) {
			return Parse(bytes.NewReader(out), source)
		}
		return fromImage(out, source)
	}
	if looksLikeText(data) {
		return Parse(bytes.NewReader(data), source)
	}
	return fromImage(data, source)
}

// fromImage finds the config embedded in a kernel image.
func fromImage(data []byte, source string) (*Config, error) {
	c, err := findIKConfig(data, source)
	if c != nil || err != nil {
		return c, err
	}
	payloads, isImage := imagePayloads(data)
	for _, p := range payloads {
		c, err := findIKConfig(p, source)
		if c != nil || err != nil {
			return c, err
		}
	}
	if isImage || len(payloads) > 0 {
		return nil, fmt.Errorf("%s is a kernel image without an embedded config (built without CONFIG_IKCONFIG=y): give its .config instead, e.g. /boot/config-RELEASE or the config-VERSION beside a Kata kernel", source)
	}
	return nil, fmt.Errorf("%s is a binary file, not a kernel config, a compressed config or a kernel image", source)
}

// Running returns the config of the running kernel, trying the places
// distributions put it: /proc/config.gz, then /boot/config-RELEASE,
// /lib/modules/RELEASE/config and /usr/lib/modules/RELEASE/config. procRoot
// is where procfs is mounted ("/proc"); the other paths are absolute.
func Running(procRoot, release string) (*Config, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	candidates := []string{filepath.Join(procRoot, "config.gz")}
	if release != "" {
		candidates = append(candidates,
			"/boot/config-"+release,
			"/lib/modules/"+release+"/config",
			"/usr/lib/modules/"+release+"/config")
	}
	return firstConfig(candidates, release)
}

func firstConfig(candidates []string, release string) (*Config, error) {
	var errs []error
	for _, p := range candidates {
		c, err := Load(p)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("read running kernel config: %w", errs[0])
	}
	what := "the running kernel"
	if release != "" {
		what += " " + release
	}
	return nil, fmt.Errorf("no config found for %s: tried %s; load the configs module (modprobe configs) or give a config file", what, strings.Join(candidates, ", "))
}
