// Package guest is the kata-cr agent's side of a guest: the session with
// the host over the virtio-serial ports, moving off the initramfs root,
// loading the modules the image ships, the environment the checks read in
// the guest, and the doctor and shell jobs.
package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"golang.org/x/sys/unix"
)

// portWait bounds the wait for a virtio-serial port to appear once its
// driver is loaded.
const portWait = 15 * time.Second

// ackWait bounds the wait for the host's ack of the done event.
const ackWait = 5 * time.Second

// savedWait bounds the wait for the host's images-saved answer once the
// images are sent: the host then only seals and syncs what it received.
const savedWait = 2 * time.Minute

// Session is the agent's end of its channels to the host, and what it
// knows about the guest.
type Session struct {
	Manifest *agentapi.Manifest
	// Release and Machine are the guest kernel's uname -r and -m; Root
	// says which root the agent runs on: RootTmpfs once it left the
	// initramfs, RootInitramfs when it could not.
	Release, Machine, Root string
	// Verbose sends log lines to the host too.
	Verbose bool

	port  *os.File
	enc   *agentapi.Encoder
	dec   *agentapi.Decoder
	data  *os.File
	start time.Time
	// hello is what the agent said in its hello, said again on a wake.
	hello agentapi.AgentInfo
}

// The roots the agent runs on.
const (
	RootInitramfs = "initramfs"
	RootTmpfs     = "tmpfs"
)

// Open opens the control port and starts the session's clock at start.
func Open(m *agentapi.Manifest, start time.Time) (*Session, error) {
	f, err := openPort(agentapi.ControlPort)
	if err != nil {
		return nil, err
	}
	return &Session{Manifest: m, port: f, enc: agentapi.NewEncoder(f), dec: agentapi.NewDecoder(f), start: start}, nil
}

// Close closes the ports.
func (s *Session) Close() {
	if s.data != nil {
		_ = s.data.Close()
	}
	_ = s.port.Close()
}

// Send writes one event to the host.
func (s *Session) Send(ev agentapi.Event) error {
	ev.Elapsed = time.Since(s.start).Seconds()
	if err := s.enc.Encode(ev); err != nil {
		return fmt.Errorf("send %s event: %w", ev.Kind, err)
	}
	return nil
}

// Hello sends the agent's hello and keeps it for a wake (NextJob).
func (s *Session) Hello(info agentapi.AgentInfo) error {
	s.hello = info
	info.UnixNano = time.Now().UnixNano()
	return s.Send(agentapi.Event{Kind: agentapi.EventHello, Agent: &info})
}

// NextJob reads the host's job. A hello message before it wakes a guest
// started from a VM template (wake), which says hello again.
func (s *Session) NextJob() (agentapi.Job, error) {
	var msg agentapi.HostMessage
	for {
		msg = agentapi.HostMessage{}
		if err := s.dec.Decode(&msg); err != nil {
			return agentapi.Job{}, fmt.Errorf("read job: %w", err)
		}
		if msg.Kind != agentapi.HostHello {
			break
		}
		if err := s.wake(msg.Wake); err != nil {
			return agentapi.Job{}, err
		}
	}
	if msg.Kind != agentapi.HostJob || msg.Job == nil {
		return agentapi.Job{}, fmt.Errorf("expected a job from the host, got %q", msg.Kind)
	}
	s.Verbose = msg.Job.Verbose
	return *msg.Job, nil
}

// wake sets the clock and stirs the random pool of a guest started from a
// VM template, then says hello again as a clone.
func (s *Session) wake(w *agentapi.Wake) error {
	if w != nil {
		if w.UnixNano > 0 {
			ts := unix.NsecToTimespec(w.UnixNano)
			if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
				log.Printf("set the clock: %v", err)
			}
		}
		if len(w.Entropy) > 0 {
			// Written bytes are mixed into the pool (not credited as
			// entropy): enough for the clones to draw different numbers.
			if err := os.WriteFile("/dev/urandom", w.Entropy, 0); err != nil {
				log.Printf("stir the random pool: %v", err)
			}
		}
	}
	info := s.hello
	info.Clone = true
	return s.Hello(info)
}

// Progress tells the host (and the console) that the job reached a stage.
func (s *Session) Progress(stage, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Printf("%s: %s", stage, msg)
	_ = s.Send(agentapi.Event{Kind: agentapi.EventProgress, Stage: stage, Message: msg})
}

// Logf writes a detail to the console, and to the host for a verbose job.
func (s *Session) Logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Print(msg)
	if s.Verbose {
		_ = s.Send(agentapi.Event{Kind: agentapi.EventLog, Message: msg})
	}
}

// Result sends a structured result of the job under a stage name.
func (s *Session) Result(stage string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode the %s result: %w", stage, err)
	}
	return s.Send(agentapi.Event{Kind: agentapi.EventResult, Stage: stage, Data: data})
}

// SendImages announces the images with their manifest, streams dir to the
// host as a tar over the data port and waits for the host's answer.
func (s *Session) SendImages(m images.Manifest, dir string) (agentapi.ImagesSaved, error) {
	port, err := s.dataPort()
	if err != nil {
		return agentapi.ImagesSaved{}, fmt.Errorf("open the data port to send the images: %w", err)
	}
	if err := s.Result(agentapi.ResultImages, agentapi.ImagesReady{Manifest: m, Bytes: dirBytes(dir)}); err != nil {
		return agentapi.ImagesSaved{}, fmt.Errorf("announce the images to the host: %w", err)
	}
	if err := images.WriteTar(port, dir); err != nil {
		return agentapi.ImagesSaved{}, fmt.Errorf("send the images to the host: %w", err)
	}
	saved, err := s.waitImagesSaved(savedWait)
	if err != nil {
		return saved, fmt.Errorf("the host did not confirm it saved the images: %w", err)
	}
	return saved, nil
}

// ReceiveImages extracts the images the host streams over the data port
// into dir.
func (s *Session) ReceiveImages(dir string) error {
	port, err := s.dataPort()
	if err != nil {
		return err
	}
	if err := images.ExtractTar(port, dir); err != nil {
		return fmt.Errorf("receive the images: %w", err)
	}
	return nil
}

// Finish sends the job's error (if any) and the done event, then waits for
// the host's ack so that nothing is lost when the guest stops.
func (s *Session) Finish(jobErr error) error {
	if jobErr != nil {
		log.Printf("job failed: %v", jobErr)
		_ = s.Send(agentapi.Event{Kind: agentapi.EventError, Error: jobErr.Error()})
	}
	if err := s.Send(agentapi.Event{Kind: agentapi.EventDone}); err != nil {
		return err
	}
	acked := make(chan struct{})
	go func() {
		for {
			var msg agentapi.HostMessage
			if err := s.dec.Decode(&msg); err != nil {
				return
			}
			if msg.Kind == agentapi.HostAck {
				close(acked)
				return
			}
		}
	}()
	select {
	case <-acked:
	case <-time.After(ackWait):
		log.Printf("no ack from the host within %s", ackWait)
	}
	return nil
}

// waitImagesSaved reads the host's answer to the images. When none comes
// within wait it unblocks its reader, so that the done and ack exchange
// that ends the job gets the control port to itself.
func (s *Session) waitImagesSaved(wait time.Duration) (agentapi.ImagesSaved, error) {
	type answer struct {
		msg agentapi.HostMessage
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		for {
			var msg agentapi.HostMessage
			err := s.dec.Decode(&msg)
			if err != nil || msg.Kind == agentapi.HostImagesSaved {
				ch <- answer{msg, err}
				return
			}
			log.Printf("ignoring a %s message from the host while waiting for images-saved", msg.Kind)
		}
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case a := <-ch:
		if a.err != nil {
			return agentapi.ImagesSaved{}, fmt.Errorf("read the host's answer: %w", a.err)
		}
		if a.msg.Saved == nil {
			return agentapi.ImagesSaved{}, errors.New("the host's images-saved message carries no answer")
		}
		return *a.msg.Saved, nil
	case <-t.C:
		if err := s.port.SetReadDeadline(time.Now()); err == nil {
			<-ch
			_ = s.port.SetReadDeadline(time.Time{})
		}
		return agentapi.ImagesSaved{}, fmt.Errorf("no answer within %s", wait)
	}
}

// dataPort opens the bulk data port, for jobs that move CRIU images.
func (s *Session) dataPort() (io.ReadWriter, error) {
	if s.data != nil {
		return s.data, nil
	}
	f, err := openPort(agentapi.DataPort)
	if err != nil {
		return nil, err
	}
	s.data = f
	return f, nil
}

// dirBytes is the size of the regular files below dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// ExtraFiles maps the files the image carries for --include into the
// container's rootfs at the same paths, so that a user's own program can
// run there.
func (s *Session) ExtraFiles() map[string]string {
	out := map[string]string{}
	for _, p := range s.Manifest.Extra {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out[p] = p
		}
	}
	return out
}

// RequireTmpfsRoot refuses to run a container from the initramfs root:
// pivot_root does not work there and CRIU cannot dump its files.
func (s *Session) RequireTmpfsRoot() error {
	if s.Root != RootTmpfs {
		return fmt.Errorf("the agent runs on the %s root (it could not switch to a tmpfs): containers cannot be checkpointed from there", s.Root)
	}
	return nil
}

// openPort waits for the virtio-serial port called name and opens it.
func openPort(name string) (*os.File, error) {
	dev, err := findPort(name, portWait)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open virtio-serial port %s: %w", name, err)
	}
	return f, nil
}

// findPort waits until the virtio-serial port called name shows up and
// returns its device node. Without udev there is no /dev/virtio-ports/NAME
// link, so the name is read from sysfs.
func findPort(name string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, p := range names {
			b, err := os.ReadFile(p)
			if err != nil || strings.TrimSpace(string(b)) != name {
				continue
			}
			dev := filepath.Join("/dev", filepath.Base(filepath.Dir(p)))
			if _, err := os.Stat(dev); err == nil {
				return dev, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("virtio-serial port %s did not appear within %s (ports: %v)", name, wait, names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
