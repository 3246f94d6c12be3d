// Package testload holds small test workloads that run in a guest's
// container. The guest agent is a multi-call binary: started as
// kata-cr-testload (Path, a link to the agent in every guest image) it runs
// Main, which runs one registered mode. A mode sets up the process state a
// scenario needs (a zombie child, a nested pid namespace, a socket), then
// announces that it is ready in a state file inside the container (StatePath)
// and keeps a heartbeat there, so that the probes of its workload
// (NewWorkload) can tell a restored process that carried on from one that
// started afresh.
//
// A mode registers itself from init with Register, and its named workload
// with container.Register; importing this package makes them known.
package testload

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Name is the name the agent binary answers to as a test workload.
const Name = "kata-cr-testload"

// Path is where every guest image has it (and where a testload workload's
// rootfs gets a copy).
const Path = "/bin/" + Name

// Binary is the testload program as a container workload needs it: it
// ships in every guest image.
var Binary = container.Binary{Name: Name, Path: Path, InImage: true}

func init() {
	container.RegisterImageBinary(Binary)
}

// Mode is one test workload program.
type Mode struct {
	Name        string
	Description string
	// Run sets the scenario up, calls s.Ready when it is, and then keeps
	// running; its error ends the program with status 1. args are the
	// words after the mode's name.
	Run func(ctx context.Context, s *State, args []string) error
	// Helper says the mode is a part of another mode's process tree (a
	// child it starts), not a workload of its own.
	Helper bool
}

var modes = map[string]Mode{}

// Register adds a mode; it panics on a name already taken or a mode
// without Run.
func Register(m Mode) {
	if m.Name == "" || m.Run == nil || strings.ContainsAny(m.Name, " /") {
		panic(fmt.Sprintf("testload.Register: mode %q needs a name (no spaces or slashes) and Run", m.Name))
	}
	if _, ok := modes[m.Name]; ok {
		panic(fmt.Sprintf("testload.Register: mode %q registered twice", m.Name))
	}
	modes[m.Name] = m
}

// Modes lists the registered modes, sorted by name.
func Modes() []Mode {
	out := make([]Mode, 0, len(modes))
	for _, m := range modes {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Invoked reports whether the running binary was started as Name (argv0's
// base name), that is, whether main should call Main.
func Invoked(argv0 string) bool {
	return filepath.Base(argv0) == Name
}

// Main runs the mode args[1] names with the words after it and returns the
// exit status: 0 when the mode ended by itself or on SIGTERM, 1 when it
// failed, 2 for a bad command line.
func Main(args []string, stderr io.Writer) int {
	if len(args) < 2 {
		usage(stderr)
		return 2
	}
	m, ok := modes[args[1]]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown mode %q\n", Name, args[1])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	s := newState(StatePath, m.Name)
	defer s.stop()
	if err := m.Run(ctx, s, args[2:]); err != nil {
		fmt.Fprintf(stderr, "%s %s: %v\n", Name, m.Name, err)
		if !m.Helper {
			// The probes read why: a container's stdio goes nowhere.
			s.stop()
			_ = s.Set(KeyError, err.Error())
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: %s MODE [ARGS...]\nmodes:\n", Name)
	for _, m := range Modes() {
		if !m.Helper {
			fmt.Fprintf(w, "  %-16s %s\n", m.Name, m.Description)
		}
	}
}

// Hold keeps a mode running until ctx ends (SIGTERM): the end of a Run
// whose state is all set up.
func Hold(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
