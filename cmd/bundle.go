package cmd

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// probeSyntax documents how a --verify-exec value becomes an argv, for the
// help and the errors.
const probeSyntax = `a JSON array of strings, as a Kubernetes exec probe's command ('["python3","-c","print(1)"]'), or words split at whitespace ('cat /run/state'); no shell runs unless the command is one`

// probeList is a repeatable flag of commands, kept as one NUL-separated
// string (NUL cannot be in a command-line argument) so that the options
// struct stays comparable.
type probeList string

func (p *probeList) Set(v string) error {
	if _, err := parseProbe(v); err != nil {
		return err
	}
	if *p != "" {
		*p += "\x00"
	}
	*p += probeList(v)
	return nil
}

func (p *probeList) String() string { return strings.ReplaceAll(string(*p), "\x00", "; ") }

func (p *probeList) Type() string { return "CMD" }

// Argvs returns each command as its argv, in the order given.
func (p probeList) Argvs() [][]string {
	if p == "" {
		return nil
	}
	var out [][]string
	for _, v := range strings.Split(string(p), "\x00") {
		argv, _ := parseProbe(v)
		out = append(out, argv)
	}
	return out
}

// parseProbe turns a --verify-exec value into an argv: a JSON array of
// strings when it starts with "[", else its whitespace-separated words,
// as a CRI exec splits a command given as one string.
func parseProbe(v string) ([]string, error) {
	s := strings.TrimSpace(v)
	if strings.HasPrefix(s, "[") {
		var argv []string
		if err := json.Unmarshal([]byte(s), &argv); err != nil {
			return nil, fmt.Errorf("%q: not a JSON array of strings (%v): give %s", v, err, probeSyntax)
		}
		if len(argv) == 0 || argv[0] == "" {
			return nil, fmt.Errorf("%q: an empty command: give %s", v, probeSyntax)
		}
		return argv, nil
	}
	argv := strings.Fields(s)
	if len(argv) == 0 {
		return nil, fmt.Errorf("%q: an empty command: give %s", v, probeSyntax)
	}
	return argv, nil
}

// bundleJob is a user's bundle as the checkpoint command runs it: the
// bundle read on this host, and the fingerprint of its rootfs for the
// manifest.
type bundleJob struct {
	*container.Bundle
	fingerprint string
}

// loadBundle reads and checks the bundle of --bundle before any boot: a key
// kata-cr does not support is a usage error naming it.
func loadBundle(dir string) (*bundleJob, error) {
	b, err := container.LoadBundle(dir)
	if err != nil {
		return nil, usageError{err}
	}
	fp, err := images.TreeFingerprint(b.Rootfs)
	if err != nil {
		return nil, usagef("--bundle %s: %v", dir, err)
	}
	return &bundleJob{Bundle: b, fingerprint: fp}, nil
}

// options is the bundle as the agent's job takes it.
func (b *bundleJob) options() *agentapi.BundleOptions {
	return &agentapi.BundleOptions{Dir: b.Dir, Spec: b.Spec, RootfsTag: container.BundleRootfsTag}
}

// share is the read-only virtio-9p share of the bundle's rootfs.
func (b *bundleJob) share() vm.Share {
	return bundleShare(b.Rootfs)
}

func bundleShare(rootfs string) vm.Share {
	return vm.Share{Tag: container.BundleRootfsTag, Path: rootfs, ReadOnly: true}
}

// record completes the manifest's bundle with what only the host knows:
// where the rootfs is, and its fingerprint.
func (b *bundleJob) record(m *images.Manifest) {
	if m.Bundle == nil {
		m.Bundle = &images.Bundle{Dir: b.Dir, Spec: b.Spec}
	}
	m.Bundle.Rootfs, m.Bundle.Fingerprint = b.Rootfs, b.fingerprint
}
