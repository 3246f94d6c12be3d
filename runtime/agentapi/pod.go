package agentapi

import (
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/pod"
)

// JobPod runs a pod (PodOptions): its containers in one guest, the way
// Kata's agent runs a sandbox, and checkpoints one of them.
const JobPod JobKind = "pod"

// PodOptions are the Options of a pod job.
type PodOptions struct {
	Pod pod.Pod `json:"pod"`
	// Container is the container checkpointed alone: the dump declares
	// its connections to the pod's other containers external, and it is
	// restored in place in the same guest, where its peers are, with a
	// new connection for each.
	Container string `json:"container"`
	// Checkpoint are the checkpoint's options (--prove, --accept-loss,
	// --runtime-setsid, --no-restart); the workload is the container's.
	Checkpoint CheckpointOptions `json:"checkpoint"`
}

// JobPodRestore restores every container of a pod checkpoint
// (PodRestoreOptions) together in this fresh guest.
const JobPodRestore JobKind = "pod-restore"

// The result events of the pod jobs (Event.Stage): ResultPodContainer
// (data PodContainer) announces the container whose images follow (to the
// host after a dump, from the host when the agent asks for them);
// ResultPodConnections (data []PodConnection) are the connections between
// the containers of a whole-pod checkpoint, for the pod's manifest.
const (
	ResultPodContainer   = "pod-container"
	ResultPodConnections = "pod-connections"
)

// PodContainer names a container of a pod job.
type PodContainer struct {
	Name string `json:"name"`
}

// PodConnection is a unix stream connection between two containers of a
// pod: the socket inode of each end as its container's dump declared it
// external. The restore hands the two ends of a new socketpair to them.
type PodConnection struct {
	A      string `json:"a"`
	AInode uint32 `json:"a_inode"`
	B      string `json:"b"`
	BInode uint32 `json:"b_inode"`
}

// PodRestoreOptions are the Options of a pod restore job. Each container's
// images follow on the DataPort when the agent asks for them, after it
// announced the container (ResultPodContainer).
type PodRestoreOptions struct {
	Pod         pod.Pod               `json:"pod"`
	Containers  []PodRestoreContainer `json:"containers"`
	Connections []PodConnection       `json:"connections,omitempty"`
}

// PodRestoreContainer is one container of a pod restore job.
type PodRestoreContainer struct {
	Name     string          `json:"name"`
	Manifest images.Manifest `json:"manifest"`
}
