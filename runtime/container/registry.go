package container

import (
	"context"
	"fmt"
	"path"
	"strings"
)

// Register adds w to the table of named workloads. Packages that define
// workloads of their own (testload) call it from init; it panics on a name
// already taken or a workload without its probes.
func Register(w Workload) {
	if w.Name == "" || w.Name == CommandWorkload || w.Ready == nil || w.Snapshot == nil || w.Verify == nil {
		panic(fmt.Sprintf("container.Register: workload %q needs a name other than %q and Ready, Snapshot and Verify", w.Name, CommandWorkload))
	}
	if _, err := Lookup(w.Name); err == nil {
		panic(fmt.Sprintf("container.Register: workload %q registered twice", w.Name))
	}
	Workloads = append(Workloads, w)
}

// imageBinaries are the programs every guest image ships
// (RegisterImageBinary).
var imageBinaries []Binary

// RegisterImageBinary declares a program that every guest image carries at
// b.Path (an absolute guest path in DefaultPath's directories or not), so
// that a workload or a user's command can use it without an --include.
func RegisterImageBinary(b Binary) {
	if b.Name == "" || !path.IsAbs(b.Path) {
		panic(fmt.Sprintf("container.RegisterImageBinary: %q needs a name and an absolute path, not %q", b.Name, b.Path))
	}
	b.InImage = true
	imageBinaries = append(imageBinaries, b)
}

// ImageBinary returns the program every guest image ships as name: its
// guest path, or its bare name when its directory is in DefaultPath.
func ImageBinary(name string) (Binary, bool) {
	for _, b := range imageBinaries {
		if name == b.Path {
			return b, true
		}
		if name == b.Name && !strings.Contains(name, "/") && inDefaultPath(path.Dir(b.Path)) {
			return b, true
		}
	}
	return Binary{}, false
}

func inDefaultPath(dir string) bool {
	for _, d := range strings.Split(DefaultPath, ":") {
		if d == dir {
			return true
		}
	}
	return false
}

// ImageFiles returns the workload's InImage binaries as PrepareRootfs wants
// them (container path to source path, the same path): in the guest they
// are copied from the image.
func (w Workload) ImageFiles() map[string]string {
	out := map[string]string{}
	for _, b := range w.Binaries {
		if b.InImage {
			out[b.Path] = b.Path
		}
	}
	return out
}

// Poll calls f until it returns nil or an error that NotYet did not make,
// the container init dies, or ctx ends; what says what was awaited, for the
// error. Probes of workloads defined outside this package use it.
func (p Probe) Poll(ctx context.Context, what string, f func() error) error {
	return p.poll(ctx, what, f)
}

// NotYet makes an error that tells Poll to try again.
func NotYet(format string, args ...any) error {
	return notYet(format, args...)
}
