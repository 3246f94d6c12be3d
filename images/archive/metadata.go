package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// containerConfig is config.dump: the container's metadata in the form
// podman, CRI-O and containerd write and checkpointctl reads.
type containerConfig struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImageName string    `json:"rootfsImageName,omitempty"`
	OCIRuntime      string    `json:"runtime,omitempty"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`
	RestoredAt      time.Time `json:"restoredTime"`
	Restored        bool      `json:"restored"`
}

// The annotations of spec.dump. checkpointctl names a container that has
// no "io.container.manager" annotation (containerd's layout) by the CRI
// container-name annotation; the kata-cr ones say where the checkpoint was
// taken.
const (
	annotationContainerName = "io.kubernetes.cri.container-name"
	annotationWorkload      = "io.kata-cr.workload"
	annotationKernel        = "io.kata-cr.kernel-release"
	annotationCRIU          = "io.kata-cr.criu-version"
	annotationArch          = "io.kata-cr.arch"
	annotationVersion       = "io.kata-cr.version"
)

// runtimeName is config.dump's runtime: the container ran under kata-cr's
// launcher in a Kata-style guest.
const runtimeName = "kata-cr"

// containerID is the checkpoint's container ID: the SHA-256 of its
// manifest, 64 hex digits like a container ID, the same on every export.
func containerID(manifest []byte) string {
	sum := sha256.Sum256(manifest)
	return hex.EncodeToString(sum[:])
}

// configDump is the config.dump of the checkpoint m.
func configDump(m images.Manifest, id string) containerConfig {
	c := containerConfig{ID: id, Name: m.Workload, OCIRuntime: runtimeName, CreatedTime: m.Created, CheckpointedAt: m.Created}
	if m.Bundle != nil {
		c.RootfsImageName = m.Bundle.Rootfs
	}
	return c
}

// specDump is the spec.dump of the checkpoint m: the bundle's spec as the
// container ran it, or the spec kata-cr generates for a named workload or a
// command (the one the guest's launcher ran), with the annotations above.
func specDump(m images.Manifest) *specs.Spec {
	var s specs.Spec
	if m.Bundle != nil && m.Bundle.Spec != nil {
		s = *m.Bundle.Spec
	} else {
		args := m.Command
		if w, err := container.LookupWorkload(m.Workload, m.Command); err == nil {
			args = w.Args
		}
		s = *container.GenerateSpec(m.Workload, args)
	}
	ann := make(map[string]string, len(s.Annotations)+6)
	for k, v := range s.Annotations {
		ann[k] = v
	}
	ann[annotationContainerName] = m.Workload
	ann[annotationWorkload] = m.Workload
	ann[annotationKernel] = m.KernelRelease
	ann[annotationCRIU] = m.CRIUVersion
	ann[annotationArch] = m.Arch
	ann[annotationVersion] = m.KataCRVersion
	s.Annotations = ann
	return &s
}
