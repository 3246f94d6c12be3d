// Package lru picks the files of a cache to let go: all but the ones
// used last, by modification time (a cache touches what it uses).
package lru

import (
	"os"
	"slices"
	"time"
)

// Beyond returns the paths to remove so that the keep newest of paths
// stay, and any path modified within grace (another process may be about
// to use it). Paths that cannot be read are left alone.
func Beyond(paths []string, keep int, grace time.Duration) []string {
	type file struct {
		path string
		mod  time.Time
	}
	var files []file
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			files = append(files, file{p, fi.ModTime()})
		}
	}
	slices.SortFunc(files, func(a, b file) int { return b.mod.Compare(a.mod) })
	var out []string
	for i, f := range files {
		if i >= keep && time.Since(f.mod) > grace {
			out = append(out, f.path)
		}
	}
	return out
}
