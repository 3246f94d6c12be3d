// Package agentapi is the wire protocol between kata-cr and its guest agent:
// the jobs the host sends, the events the agent answers with, the image
// manifest, and the JSON-lines codec over the virtio-serial ports.
package agentapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/reports"
)

// The names of the virtio-serial ports between kata-cr and its guest agent.
// The guest finds its end under /sys/class/virtio-ports/*/name.
const (
	// ControlPort carries JSON lines both ways: HostMessages to the guest,
	// Events back.
	ControlPort = "kata-cr.0"
	// DataPort carries bulk data (a tar stream of CRIU images). It has no
	// framing of its own: a tar stream ends itself, and an Event on the
	// control port announces what is coming.
	DataPort = "kata-cr.data"
)

// JobKind names what the agent is asked to do.
type JobKind string

// The kinds of job. An agent answers a kind it does not know with an error
// event, so the host and the guest can grow new kinds one at a time.
const (
	JobDoctor     JobKind = "doctor"
	JobShell      JobKind = "shell"
	JobCheckpoint JobKind = "checkpoint"
	JobRestore    JobKind = "restore"
	// JobCorpus checkpoints many workloads in one guest (CorpusOptions),
	// JobCorpusRestore restores them in another (CorpusRestoreOptions).
	JobCorpus        JobKind = "corpus"
	JobCorpusRestore JobKind = "corpus-restore"
)

// Job is the one task the agent runs before it powers the guest off.
type Job struct {
	Kind JobKind `json:"kind"`
	// Fix asks the agent to apply the fixers for what the checks found and
	// to check again.
	Fix bool `json:"fix,omitempty"`
	// DryRun lists the fixes without applying them.
	DryRun bool `json:"dry_run,omitempty"`
	// LoadModules asks the agent to load the CRIU modules shipped in the
	// image before it runs anything. A doctor job leaves it off so that it
	// sees the guest as Kata boots it; --fix loads them through the fixers.
	LoadModules bool `json:"load_modules,omitempty"`
	// Verbose makes the agent send log events.
	Verbose bool `json:"verbose,omitempty"`
	// Options holds what a kind needs beyond the fields above, decoded by
	// the agent's handler for that kind.
	Options json.RawMessage `json:"options,omitempty"`
}

// HostKind is the kind of a message from the host.
type HostKind string

// The kinds of HostMessage.
const (
	// HostJob carries the Job; it is the first message.
	HostJob HostKind = "job"
	// HostAck answers the agent's done event: the agent powers off once it
	// has it (or after a short wait), so nothing it sent is lost in the
	// virtio queue when the guest stops.
	HostAck HostKind = "ack"
	// HostImagesSaved answers a checkpoint job's images: whether the host
	// saved them (Saved). Until it has the answer the agent keeps what it
	// needs to put the workload back.
	HostImagesSaved HostKind = "images-saved"
	// HostHello wakes an agent in a guest started from a VM template: its
	// hello went to the host that booted the template, so it says hello
	// again (marked Clone), after setting the guest's clock and mixing
	// the host's bytes into its random pool (Wake).
	HostHello HostKind = "hello"
)

// Wake is what a guest started from a VM template needs from its host
// before its job: the time (the template's clock stopped when it was
// saved) and fresh bytes for the random pool (every clone starts from the
// same one).
type Wake struct {
	// UnixNano is the host's wall clock.
	UnixNano int64 `json:"unix_nano"`
	// Entropy is mixed into the guest's random pool.
	Entropy []byte `json:"entropy"`
}

// HostMessage is one line from the host to the agent.
type HostMessage struct {
	Kind HostKind `json:"kind"`
	Job  *Job     `json:"job,omitempty"`
	// Saved is the answer of an images-saved message.
	Saved *ImagesSaved `json:"saved,omitempty"`
	// Wake is the content of a hello message.
	Wake *Wake `json:"wake,omitempty"`
}

// EventKind is the kind of an Event from the agent.
type EventKind string

// The kinds of Event.
const (
	// EventHello is the agent's first line: the guest has booted and the
	// agent is ready for its job.
	EventHello EventKind = "hello"
	// EventProgress names a stage the agent has reached.
	EventProgress EventKind = "progress"
	// EventLog is a line of detail, sent when the job is verbose.
	EventLog EventKind = "log"
	// EventReport carries the job's Report.
	EventReport EventKind = "report"
	// EventResult carries kind-specific data in Data.
	EventResult EventKind = "result"
	// EventError says the job failed; Error says why.
	EventError EventKind = "error"
	// EventDone is the agent's last line before it powers off.
	EventDone EventKind = "done"
)

// Event is one line from the agent to the host.
type Event struct {
	Kind EventKind `json:"kind"`
	// Elapsed is the time since the agent started, in seconds: the guest's
	// clock is not the host's.
	Elapsed float64 `json:"elapsed,omitempty"`
	// Stage names the step of a progress event: "modules", "checks", ...
	Stage   string          `json:"stage,omitempty"`
	Message string          `json:"message,omitempty"`
	Report  *reports.Report `json:"report,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Error   string          `json:"error,omitempty"`
	// Agent describes the guest, on the hello event.
	Agent *AgentInfo `json:"agent,omitempty"`
}

// AgentInfo is what the agent says about itself and its guest on hello.
type AgentInfo struct {
	Version       string `json:"version"`
	KernelRelease string `json:"kernel_release"`
	// Root says what the agent's root file system is ("tmpfs" once it has
	// left the initramfs).
	Root string `json:"root"`
	// Boot is the guest's own clock at the agent's start-up stages.
	Boot *BootProfile `json:"boot,omitempty"`
	// Clone is true for the hello of a guest started from a VM template:
	// Boot is then the template's boot.
	Clone bool `json:"clone,omitempty"`
	// UnixNano is the guest's wall clock when it said hello.
	UnixNano int64 `json:"unix_nano,omitempty"`
}

// BootProfile is the guest kernel's uptime (CLOCK_BOOTTIME, seconds) at
// each stage of the agent's start: what the kernel and u-root's init
// took, then the agent's own steps until its hello.
type BootProfile struct {
	AgentStart    float64 `json:"agent_start_s"`
	RootSwitched  float64 `json:"root_switched_s"`
	ModulesLoaded float64 `json:"modules_loaded_s"`
	PortOpen      float64 `json:"port_open_s"`
}

// maxLine bounds one JSON line, so a broken peer cannot make the reader
// grow without end. A report with every finding is far below this.
const maxLine = 16 << 20

// ErrLineTooLong is returned for a line longer than maxLine.
var ErrLineTooLong = errors.New("json line too long")

// Encoder writes values as JSON lines; it is safe for concurrent use.
type Encoder struct {
	mu sync.Mutex
	w  io.Writer
}

// NewEncoder returns an Encoder writing to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{w: w} }

// Encode writes v as one line.
func (e *Encoder) Encode(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %T: %w", v, err)
	}
	b = append(b, '\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err = e.w.Write(b)
	return err
}

// Decoder reads JSON lines.
type Decoder struct {
	r *bufio.Reader
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder { return &Decoder{r: bufio.NewReaderSize(r, 64<<10)} }

// Decode reads the next non-empty line into v. It returns io.EOF at the
// end of the stream.
func (d *Decoder) Decode(v any) error {
	for {
		line, err := d.readLine()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			continue
		}
		if err := json.Unmarshal(line, v); err != nil {
			return fmt.Errorf("decode %T from %q: %w", v, excerpt.Clip(string(line), 120), err)
		}
		return nil
	}
}

func (d *Decoder) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := d.r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, ErrLineTooLong
		}
		switch {
		case err == nil:
			return trimEOL(line), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			// A last line without its newline is still a line.
			return trimEOL(line), nil
		default:
			return nil, err
		}
	}
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// ManifestPath is where the guest image describes itself to the agent.
const ManifestPath = "/etc/kata-cr/image.json"

// Manifest is what the host decided when it built the guest image: the
// agent only reads it, loads and runs.
type Manifest struct {
	// KernelRelease is the release of the kernel the image was built for;
	// the agent warns when the running kernel is another.
	KernelRelease string `json:"kernel_release"`
	// ModulesDir holds the shipped modules and a modules.dep listing only
	// them.
	ModulesDir string `json:"modules_dir,omitempty"`
	// AgentModules are the modules the agent loads for itself, in load
	// order, before it can talk to the host (virtio-serial when it is a
	// module).
	AgentModules []string `json:"agent_modules,omitempty"`
	// CRIUModules are the modules CRIU needs, in load order, with their
	// dependencies; loaded only when a job asks for it or a fixer does.
	CRIUModules []string `json:"criu_modules,omitempty"`
	// MissingModules are modules CRIU wants that this kernel neither
	// builds in nor ships.
	MissingModules []string `json:"missing_modules,omitempty"`
	// ContainerModules are the modules a bundle's container needs (the
	// 9p share of its rootfs, the overlay over it), in load order; loaded
	// only for a bundle.
	ContainerModules []string `json:"container_modules,omitempty"`
	// KernelConfig is the config of the kernel, shipped beside it.
	KernelConfig string `json:"kernel_config,omitempty"`
	// CRIU is the criu binary; the agent asks it for its version.
	CRIU string `json:"criu,omitempty"`
	// Busybox and Tar are the workload shell and GNU tar.
	Busybox string `json:"busybox,omitempty"`
	Tar     string `json:"tar,omitempty"`
	// Extra lists the guest paths of files added with --include.
	Extra []string `json:"extra,omitempty"`
}

// ShellOptions are the Options of a shell job: the user's terminal, so the
// guest's shell draws the way the user's terminal expects.
type ShellOptions struct {
	Term string `json:"term,omitempty"`
	Rows int    `json:"rows,omitempty"`
	Cols int    `json:"cols,omitempty"`
}

// GuestMarker is on the kernel command line of every guest kata-cr boots:
// the agent, which powers the machine off when done, refuses to run
// without it.
const GuestMarker = "kata-cr.guest=1"
