package testload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes, workloads and state keys of the socket scenarios.
const (
	// ModeTCP holds an established TCP connection between a server and a
	// client inside the tree and sends a message round it every beat.
	ModeTCP = "tcp-established"
	// KeyEchoes counts the round trips over the connection; KeyTCPError
	// holds the last failed one.
	KeyEchoes   = "tcp_echoes"
	KeyTCPError = "tcp_error"

	// ModeUDPCork holds a UDP socket with UDP_CORK set and a datagram
	// pending in it.
	ModeUDPCork = "udp-cork"

	// ModeUnixQueued holds a listening unix socket with a connection from
	// a client of the tree still queued, its request sent and not
	// accepted. Once QueueTrigger exists the server accepts the connection
	// and answers the request.
	ModeUnixQueued = "unix-queued"
	// QueueSocket is where the listening socket is bound, QueueTrigger the
	// file that makes the server accept (container paths).
	QueueSocket  = "/run/kata-cr-queue.sock"
	QueueTrigger = "/run/kata-cr-queue.accept"
	// KeyQueued is "waiting" until the trigger, then "answered" or what
	// went wrong.
	KeyQueued = "queued"
	// QueuedWaiting and QueuedAnswered are values of KeyQueued.
	QueuedWaiting  = "waiting"
	QueuedAnswered = "answered"
)

// queueTimeout bounds each step of answering the queued connection: the
// data is in the socket's queue or it is not.
const queueTimeout = 2 * time.Second

func init() {
	Register(Mode{Name: ModeTCP, Description: "a TCP server and a connected client that exchange a message every beat", Run: runTCP})
	Register(Mode{Name: ModeUDPCork, Description: "a UDP socket with UDP_CORK set and a datagram pending", Run: runUDPCork})
	Register(Mode{Name: ModeUnixQueued, Description: "a listening unix socket with a client's connection and request queued, accepted once " + QueueTrigger + " exists", Run: runUnixQueued})
	container.Register(NewWorkload("tcp-established", "an established TCP connection inside the tree, still answering ("+Name+" "+ModeTCP+")", ModeTCP, nil, verifyTCP))
	container.Register(NewWorkload("udp-cork", "a corked UDP socket with a datagram pending ("+Name+" "+ModeUDPCork+")", ModeUDPCork, nil, nil))
	container.Register(NewWorkload("unix-queued", "a listening unix socket with a client's request queued, not yet accepted ("+Name+" "+ModeUnixQueued+")", ModeUnixQueued, nil, verifyQueued))
}

// listenTCP listens on a free port of 127.0.0.1 with plain TCP: Go
// listens with MPTCP where the kernel has it, a socket protocol CRIU cannot
// dump (process.socket-protocols).
func listenTCP(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}

func runTCP(ctx context.Context, s *State, _ []string) error {
	ln, err := listenTCP(ctx)
	if err != nil {
		return err
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer server.Close()
	// The server echoes every line back.
	go func() {
		r := bufio.NewReader(server)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if _, err := server.Write([]byte(line)); err != nil {
				return
			}
		}
	}()
	if err := s.Ready("tcp_client", client.LocalAddr().String(), "tcp_server", server.LocalAddr().String(), KeyEchoes, "0"); err != nil {
		return err
	}
	r := bufio.NewReader(client)
	t := time.NewTicker(beatInterval)
	defer t.Stop()
	for n := 1; ; {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		msg := fmt.Sprintf("ping %d\n", n)
		_ = client.SetDeadline(time.Now().Add(5 * time.Second))
		_, err := client.Write([]byte(msg))
		var got string
		if err == nil {
			got, err = r.ReadString('\n')
		}
		if err == nil && got != msg {
			err = fmt.Errorf("sent %q, the server echoed %q", msg, got)
		}
		if err != nil {
			_ = s.Set(KeyTCPError, err.Error())
			continue
		}
		if err := s.Set(KeyEchoes, strconv.Itoa(n)); err != nil {
			return err
		}
		n++
	}
}

// verifyTCP checks that the restored connection carried on: more round
// trips than at the dump, none failed.
func verifyTCP(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
	now, err := countPastWith(ctx, p, before, KeyEchoes, KeyTCPError)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the TCP connection %s -> %s still answers: %s round trips at the dump, %s now", now["tcp_client"], now["tcp_server"], before[KeyEchoes], now[KeyEchoes]), nil
}

func runUDPCork(ctx context.Context, s *State, _ []string) error {
	rcv, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(rcv)
	if err := unix.Bind(rcv, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	to, err := unix.Getsockname(rcv)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	snd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(snd)
	if err := unix.Connect(snd, to); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := unix.SetsockoptInt(snd, unix.IPPROTO_UDP, unix.UDP_CORK, 1); err != nil {
		return fmt.Errorf("set UDP_CORK: %w", err)
	}
	msg := []byte("a corked datagram")
	if _, err := unix.Write(snd, msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if err := s.Ready("udp_corked", "1", "udp_pending", strconv.Itoa(len(msg))); err != nil {
		return err
	}
	return Hold(ctx)
}

func runUnixQueued(ctx context.Context, s *State, _ []string) error {
	_ = os.Remove(QueueSocket)
	_ = os.Remove(QueueTrigger)
	addr := &net.UnixAddr{Name: QueueSocket, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	client, err := net.DialUnix("unix", nil, addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer client.Close()
	const request = "request 1\n"
	if _, err := client.Write([]byte(request)); err != nil {
		return fmt.Errorf("send the request: %w", err)
	}
	if err := s.Ready(KeyQueued, QueuedWaiting); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(beatInterval):
		}
		if _, err := os.Stat(QueueTrigger); err == nil {
			break
		}
	}
	if err := s.Set(KeyQueued, answerQueued(ln, client, request)); err != nil {
		return err
	}
	return Hold(ctx)
}

// answerQueued accepts the queued connection, reads its request and
// answers it; it returns QueuedAnswered when the client got the answer, or
// what went wrong.
func answerQueued(ln *net.UnixListener, client *net.UnixConn, request string) string {
	_ = ln.SetDeadline(time.Now().Add(queueTimeout))
	conn, err := ln.AcceptUnix()
	if err != nil {
		return "lost: no connection to accept: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(queueTimeout))
	got, err := bufio.NewReader(conn).ReadString('\n')
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Sprintf("lost: the server read nothing of the queued request %q within %s", request, queueTimeout)
	}
	if err != nil {
		return "lost: read the request: " + err.Error()
	}
	if got != request {
		return fmt.Sprintf("lost: the server read %q, the client sent %q", got, request)
	}
	if _, err := conn.Write([]byte("answer to " + got)); err != nil {
		return "lost: answer: " + err.Error()
	}
	_ = client.SetDeadline(time.Now().Add(queueTimeout))
	reply, err := bufio.NewReader(client).ReadString('\n')
	if err != nil {
		return "lost: the client got no answer: " + err.Error()
	}
	if reply != "answer to "+request {
		return fmt.Sprintf("lost: the client got %q", reply)
	}
	return QueuedAnswered
}

// verifyQueued makes the restored server accept the connection queued at
// the dump and checks that its request was answered.
func verifyQueued(ctx context.Context, p container.Probe, _, _ container.State) (string, error) {
	if err := os.WriteFile(p.Path(QueueTrigger), nil, 0o644); err != nil {
		return "", fmt.Errorf("tell the server to accept: %w", err)
	}
	var got string
	err := p.Poll(ctx, "wait for the server to answer the queued connection", func() error {
		st, err := ReadState(p)
		if err != nil {
			return container.NotYet("%v", err)
		}
		if got = st[KeyQueued]; got == QueuedWaiting {
			return container.NotYet("still waiting")
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if got != QueuedAnswered {
		return "", fmt.Errorf("the connection queued on %s at the dump was not answered: %s", QueueSocket, got)
	}
	return fmt.Sprintf("the connection queued on %s at the dump was accepted and answered", QueueSocket), nil
}
