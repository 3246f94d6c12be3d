package testload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// Modes and state keys of the unix socketpair scenario.
const (
	// ModeUnixPairs holds three unix socketpairs, each with one message
	// always in flight: a SOCK_STREAM pair whose other end is in a child
	// (ModeUnixEcho, which echoes every record), and a SOCK_DGRAM and a
	// SOCK_SEQPACKET pair with both ends in the init. Every beat it sends
	// the next record through each pair and reads the previous one.
	ModeUnixPairs = "unix-pairs"
	// ModeUnixEcho echoes the records it reads on descriptor 3: the
	// child of ModeUnixPairs.
	ModeUnixEcho = "unix-echo"
	// KeyPairRounds counts the beats in which every pair passed its
	// record in order.
	KeyPairRounds = "unix_pair_rounds"
	// echoFD is the descriptor the echo child gets its end on.
	echoFD = 3
)

// pairRecord is the nth record sent through a pair: fixed in size, so a
// stream gives it back whole.
func pairRecord(n int) []byte {
	return fmt.Appendf(nil, "pair %010d\n", n)
}

// pairRecordSize is the size of every record.
var pairRecordSize = len(pairRecord(0))

func init() {
	Register(Mode{Name: ModeUnixPairs, Description: "unix socketpairs (stream with a child at the other end, dgram and seqpacket in the init) passing a record every beat, one always queued", Run: runUnixPairs})
	Register(Mode{Name: ModeUnixEcho, Description: "echoes the records it reads on fd 3", Helper: true, Run: runUnixEcho})
	registerWorkload(NewWorkload("unix-pairs", "unix socketpairs of SOCK_STREAM (peer in a child), SOCK_DGRAM and SOCK_SEQPACKET passing a record every beat, one always queued ("+Name+" "+ModeUnixPairs+")",
		ModeUnixPairs, nil, verifyBeats(KeyPairRounds, "beats in which all three unix socketpairs passed their queued record in order")))
}

// unixPair is a socketpair the init sends through (tx) and reads from
// (rx); for the stream pair rx is tx, and the child echoes.
type unixPair struct {
	kind   string
	tx, rx int
}

func runUnixPairs(ctx context.Context, s *State, _ []string) error {
	var pairs []unixPair
	for _, p := range []struct {
		kind string
		typ  int
	}{{"stream", unix.SOCK_STREAM}, {"dgram", unix.SOCK_DGRAM}, {"seqpacket", unix.SOCK_SEQPACKET}} {
		fds, err := unix.Socketpair(unix.AF_UNIX, p.typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socketpair %s: %w", p.kind, err)
		}
		if err := unix.SetNonblock(fds[0], true); err != nil {
			return err
		}
		if p.typ != unix.SOCK_STREAM {
			if err := unix.SetNonblock(fds[1], true); err != nil {
				return err
			}
			pairs = append(pairs, unixPair{p.kind, fds[0], fds[1]})
			continue
		}
		pid, err := syscall.ForkExec("/proc/self/exe", []string{Name, ModeUnixEcho}, &syscall.ProcAttr{
			Files: []uintptr{0, 1, 2, uintptr(fds[1])},
		})
		if err != nil {
			return fmt.Errorf("start the %s child: %w", ModeUnixEcho, err)
		}
		unix.Close(fds[1])
		_ = pid // the child ends with the container
		pairs = append(pairs, unixPair{p.kind, fds[0], fds[0]})
	}
	for _, p := range pairs {
		if _, err := unix.Write(p.tx, pairRecord(0)); err != nil {
			return fmt.Errorf("send through the %s pair: %w", p.kind, err)
		}
	}
	if err := s.Ready("unix_pairs", "stream,dgram,seqpacket", KeyPairRounds, "0"); err != nil {
		return err
	}
	return beats(ctx, s, KeyPairRounds, func(n int) ([]string, error) {
		for _, p := range pairs {
			if _, err := unix.Write(p.tx, pairRecord(n)); err != nil {
				return nil, fmt.Errorf("send through the %s pair: %w", p.kind, err)
			}
			got, err := readRecord(p.rx)
			if err != nil {
				return nil, fmt.Errorf("read from the %s pair: %w", p.kind, err)
			}
			if want := pairRecord(n - 1); string(got) != string(want) {
				return nil, fmt.Errorf("the %s pair gave %q, want %q", p.kind, got, want)
			}
		}
		return nil, nil
	})
}

// readRecord reads one record from a non-blocking socket, waiting for it
// at most stepTimeout.
func readRecord(fd int) ([]byte, error) {
	b := make([]byte, pairRecordSize)
	got := 0
	for got < len(b) {
		k, err := unix.Read(fd, b[got:])
		switch {
		case errors.Is(err, unix.EAGAIN):
			if err := waitReadable(fd); err != nil {
				return nil, err
			}
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return nil, err
		case k == 0:
			return nil, io.ErrUnexpectedEOF
		default:
			got += k
		}
	}
	return b, nil
}

func runUnixEcho(ctx context.Context, _ *State, _ []string) error {
	b := make([]byte, pairRecordSize)
	for ctx.Err() == nil {
		got := 0
		for got < len(b) {
			k, err := unix.Read(echoFD, b[got:])
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read fd %d: %w", echoFD, err)
			}
			if k == 0 {
				return nil
			}
			got += k
		}
		if _, err := unix.Write(echoFD, b); err != nil {
			return fmt.Errorf("echo on fd %d: %w", echoFD, err)
		}
	}
	return nil
}
