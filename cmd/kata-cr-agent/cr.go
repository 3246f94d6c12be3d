package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// crRoot holds what a checkpoint or restore job builds in the guest: the
// container's rootfs, the sandbox's files and the images. It lives on the
// agent's tmpfs root, never on the initramfs (which CRIU cannot dump).
const crRoot = "/var/lib/kata-cr"

// sandboxHostname is the pod's hostname in the sandbox's files and the
// container's uts namespace.
const sandboxHostname = "kata-cr-pod"

// readyTimeout bounds the wait for a workload to come up (or, restored, to
// prove it carries on) under TCG.
const readyTimeout = 90 * time.Second

// crPaths are the directories of one job.
type crPaths struct {
	rootfs, sandbox, images string
}

func newCRPaths() (crPaths, error) {
	p := crPaths{
		rootfs:  filepath.Join(crRoot, "rootfs"),
		sandbox: filepath.Join(crRoot, "sandbox"),
		images:  filepath.Join(crRoot, "images"),
	}
	for _, d := range []string{p.rootfs, p.sandbox, p.images} {
		if err := os.RemoveAll(d); err != nil {
			return p, fmt.Errorf("prepare %s: %w", d, err)
		}
	}
	if err := os.MkdirAll(crRoot, 0o755); err != nil {
		return p, fmt.Errorf("prepare %s: %w", crRoot, err)
	}
	return p, nil
}

// requireTmpfsRoot refuses to run a container from the initramfs root:
// pivot_root does not work there and CRIU cannot dump its files.
func (s *session) requireTmpfsRoot() error {
	if s.root != "tmpfs" {
		return fmt.Errorf("the agent runs on the %s root (it could not switch to a tmpfs): containers cannot be checkpointed from there", s.root)
	}
	return nil
}

// ensurePath puts the usual directories in PATH: container.PrepareRootfs
// looks busybox and the workloads' binaries up there, and CRIU finds GNU
// tar there to save tmpfs contents.
func ensurePath() {
	old := os.Getenv("PATH")
	have := map[string]bool{}
	for _, d := range filepath.SplitList(old) {
		have[d] = true
	}
	parts := []string{}
	for _, d := range filepath.SplitList(container.DefaultPath) {
		if !have[d] {
			parts = append(parts, d)
		}
	}
	if old != "" {
		parts = append(parts, old)
	}
	os.Setenv("PATH", strings.Join(parts, ":"))
}

// workloadFor picks the workload a job names: a user's command, or a named
// one (the default when neither is given).
func workloadFor(name string, command []string) (container.Workload, error) {
	if len(command) > 0 {
		return container.Command(command), nil
	}
	if name == "" {
		name = container.DefaultWorkload
	}
	return container.Lookup(name)
}

// extraFiles maps the files the image carries for --include into the
// container's rootfs at the same paths, so that a user's own program can
// run there.
func (s *session) extraFiles() map[string]string {
	out := map[string]string{}
	for _, p := range s.manifest.Extra {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out[p] = p
		}
	}
	return out
}

// criuFailure fills what a failed CRIU call tells: the headline, the log's
// explanations.
func criuFailure(cp *reports.Checkpoint, err error) {
	cp.Error = err.Error()
	var ce *criu.Error
	if errors.As(err, &ce) {
		cp.Explanations = ce.Explanations
	}
}
