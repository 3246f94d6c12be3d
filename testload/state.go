package testload

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// StatePath is the state file a mode keeps inside its container.
const StatePath = "/run/kata-cr-testload.state"

// Keys every mode's state has.
const (
	// KeyMode is the mode's name.
	KeyMode = "mode"
	// KeyReady is "yes" once the mode has set its scenario up.
	KeyReady = "ready"
	// KeyRun is a random id the process drew at its start and keeps in
	// memory: a restored process writes the same one, a restarted one
	// another.
	KeyRun = "run"
	// KeyBeat counts, in memory, the heartbeats since Ready.
	KeyBeat = "beat"
	// KeyError is why the mode failed.
	KeyError = "error"
)

// beatInterval is how often a ready mode writes its heartbeat.
const beatInterval = 100 * time.Millisecond

// State is a mode's state file: what it has set up, for the probes. It is
// written whole (a temporary file renamed over it), so a reader never sees
// half of it, and no file stays open.
type State struct {
	path string
	mu   sync.Mutex
	vals map[string]string
	beat int
	done chan struct{}
	once sync.Once
}

func newState(path, mode string) *State {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &State{path: path, vals: map[string]string{KeyMode: mode, KeyRun: hex.EncodeToString(b)}, done: make(chan struct{})}
}

// Set records key/value pairs (kv holds pairs) and writes the file.
func (s *State) Set(kv ...string) error {
	if len(kv)%2 != 0 {
		return fmt.Errorf("state: odd key/value list %q", kv)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < len(kv); i += 2 {
		s.vals[kv[i]] = kv[i+1]
	}
	return s.writeLocked()
}

// Ready records kv, marks the mode ready and starts the heartbeat.
func (s *State) Ready(kv ...string) error {
	if err := s.Set(append(kv, KeyReady, "yes", KeyBeat, "0")...); err != nil {
		return err
	}
	go s.heartbeat()
	return nil
}

func (s *State) heartbeat() {
	t := time.NewTicker(beatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.beat++
		s.vals[KeyBeat] = strconv.Itoa(s.beat)
		err := s.writeLocked()
		s.mu.Unlock()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: heartbeat: %v\n", Name, err)
		}
	}
}

// run is the process's run id (KeyRun).
func (s *State) run() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vals[KeyRun]
}

func (s *State) stop() {
	s.once.Do(func() { close(s.done) })
}

func (s *State) writeLocked() error {
	data, err := json.Marshal(s.vals)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// ParseState decodes a state file.
func ParseState(data []byte) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", StatePath, err)
	}
	if m[KeyMode] == "" || m[KeyRun] == "" {
		return nil, fmt.Errorf("parse %s: no %s or %s in %q", StatePath, KeyMode, KeyRun, data)
	}
	return m, nil
}

// errNoState says the state file is not there (yet).
var errNoState = errors.New("no state file")
