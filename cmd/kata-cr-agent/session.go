package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// portWait bounds the wait for a virtio-serial port to appear once its
// driver is loaded.
const portWait = 15 * time.Second

// session is the agent's end of its channels to the host, and what it
// knows about the guest.
type session struct {
	manifest *agentapi.Manifest
	port     *os.File
	enc      *agentapi.Encoder
	dec      *agentapi.Decoder
	data     *os.File
	start    time.Time
	job      agentapi.Job

	release, machine, root string
}

func openSession(m *agentapi.Manifest, start time.Time) (*session, error) {
	f, err := openPort(agentapi.ControlPort)
	if err != nil {
		return nil, err
	}
	return &session{manifest: m, port: f, enc: agentapi.NewEncoder(f), dec: agentapi.NewDecoder(f), start: start}, nil
}

func (s *session) close() {
	if s.data != nil {
		_ = s.data.Close()
	}
	_ = s.port.Close()
}

// send writes one event to the host.
func (s *session) send(ev agentapi.Event) error {
	ev.Elapsed = time.Since(s.start).Seconds()
	if err := s.enc.Encode(ev); err != nil {
		return fmt.Errorf("send %s event: %w", ev.Kind, err)
	}
	return nil
}

// progress tells the host (and the console) that the job reached a stage.
func (s *session) progress(stage, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Printf("%s: %s", stage, msg)
	_ = s.send(agentapi.Event{Kind: agentapi.EventProgress, Stage: stage, Message: msg})
}

// logf writes a detail to the console, and to the host for a verbose job.
func (s *session) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	log.Print(msg)
	if s.job.Verbose {
		_ = s.send(agentapi.Event{Kind: agentapi.EventLog, Message: msg})
	}
}

// Data opens the bulk data port, for jobs that move CRIU images.
func (s *session) Data() (*os.File, error) {
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
