//go:build !linux

package kernel

import "errors"

var errNotLinux = errors.New("loading kernel modules needs Linux")

// LoadModules loads modules and their dependencies; only on Linux.
func LoadModules(modulesDir string, names ...string) ([]string, error) { return nil, errNotLinux }
