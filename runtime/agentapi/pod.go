package agentapi

import "github.com/kata-cr/kata-cr/pod"

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
