//go:build linux

package kernel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxModuleSize bounds a decompressed module; the largest in a distribution
// kernel are a few tens of megabytes.
const maxModuleSize = 256 << 20

// LoadModules loads the modules names and everything they need (Closure)
// from modulesDir into the running kernel. The guest has no modprobe, so
// this does modprobe's work: finit_module for a plain .ko, init_module on
// the decompressed image for .ko.xz, .ko.zst and .ko.gz. It returns the
// modules it loaded, in order, leaving out those already loaded or built
// in. A soft dependency that fails to load is skipped, as modprobe does
// (crc32c_intel fails on a CPU without SSE 4.2 and crc32c_generic does the
// job).
func LoadModules(modulesDir string, names ...string) ([]string, error) {
	dep, err := LoadModulesDep(modulesDir)
	if err != nil {
		return nil, fmt.Errorf("load modules: %w", err)
	}
	mods, err := dep.Closure(names...)
	if err != nil {
		return nil, fmt.Errorf("load modules: %w", err)
	}
	var loaded []string
	for _, m := range mods {
		fresh, err := insertModule(filepath.Join(modulesDir, m.Path))
		if err != nil {
			if m.Soft {
				continue
			}
			return loaded, fmt.Errorf("load module %s: %w", m.Name, err)
		}
		if fresh {
			loaded = append(loaded, m.Name)
		}
	}
	return loaded, nil
}

// insertModule loads one module file; fresh is false when it was loaded
// already.
func insertModule(path string) (fresh bool, err error) {
	kind := ""
	switch {
	case strings.HasSuffix(path, ".ko.xz"):
		kind = compXZ
	case strings.HasSuffix(path, ".ko.zst"):
		kind = compZstd
	case strings.HasSuffix(path, ".ko.gz"):
		kind = compGzip
	}
	if kind == "" {
		err = finitModule(path)
	} else {
		var data, image []byte
		data, err = readFileLimit(path, maxModuleSize)
		if err != nil {
			return false, err
		}
		image, err = decompress(kind, data, maxModuleSize, true)
		if err != nil {
			return false, fmt.Errorf("decompress %s: %w", path, err)
		}
		err = unix.InitModule(image, "")
	}
	switch {
	case errors.Is(err, unix.EEXIST):
		return false, nil
	case errors.Is(err, unix.EPERM):
		return false, fmt.Errorf("%s: %w (loading modules needs root, CAP_SYS_MODULE and modules not disabled)", path, err)
	case errors.Is(err, unix.ENOSYS):
		return false, fmt.Errorf("%s: %w (the kernel was built without module support)", path, err)
	case err != nil:
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return true, nil
}

func finitModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	// finit_module arrived in 3.8; older kernels take the image.
	data, rerr := readFileLimit(path, maxModuleSize)
	if rerr != nil {
		return rerr
	}
	return unix.InitModule(data, "")
}
