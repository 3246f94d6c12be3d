package testload

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// The TCP listener scenario.
const (
	// ModeTCPListen listens on TCP and greets each client with its run
	// id: the only socket of its tree is a listening one.
	ModeTCPListen = "tcp-listen"
	// KeyListen is the address it listens on (in the sandbox's network
	// namespace, which the container shares, as under Kata).
	KeyListen = "listen"
)

func init() {
	Register(Mode{Name: ModeTCPListen, Description: "listens on a TCP port of 127.0.0.1 and greets each client with its run id", Run: runTCPListen})
	registerWorkload(NewWorkload("tcp-listen", "a TCP listener on 127.0.0.1 greeting each client ("+Name+" "+ModeTCPListen+")", ModeTCPListen, nil, verifyListen))
}

// greeting is what the listener says to a client.
func greeting(run string) string {
	return Name + " " + ModeTCPListen + " " + run + "\n"
}

func runTCPListen(ctx context.Context, s *State, _ []string) error {
	ln, err := listenTCP(ctx)
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	if err := s.Ready(KeyListen, ln.Addr().String()); err != nil {
		return err
	}
	run := s.run()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept: %w", err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte(greeting(run)))
		c.Close()
	}
}

// verifyListen connects to the restored listener: it must greet with the
// run id it had at the dump.
func verifyListen(ctx context.Context, _ container.Probe, before, _ container.State) (string, error) {
	addr := before[KeyListen]
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return "", fmt.Errorf("connect to the restored listener on %s: %w", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read the restored listener's greeting on %s: %w", addr, err)
	}
	if want := greeting(before[KeyRun]); got != want {
		return "", fmt.Errorf("the listener on %s greets with %q, want %q", addr, strings.TrimSpace(got), strings.TrimSpace(want))
	}
	return fmt.Sprintf("the restored listener on %s greets with the run id of the dump", addr), nil
}
