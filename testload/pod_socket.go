package testload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes, workloads and state keys of a pod's two containers that talk over
// a unix stream socket on the pod's shared volume.
const (
	// ModePodServer listens on PodSocket and answers every request line
	// "req N" with "ok N SERVED", SERVED counting the requests it served.
	ModePodServer = "pod-server"
	// ModePodClient (the sidecar) connects to PodSocket once, keeps that
	// one connection, sends a request every podBeat and counts the
	// answers; a request not answered within podResend is sent again, as
	// a real client does.
	ModePodClient = "pod-client"
	// PodVolume is where the pod's volume is mounted in both containers,
	// PodSocket the server's socket on it.
	PodVolume = "/run/pod"
	PodSocket = PodVolume + "/app.sock"

	// KeyPodServed counts the requests the server answered.
	KeyPodServed = "pod_served"
	// KeyPodAnswered counts the requests the client got an answer to,
	// KeyPodLastAnswer is the server's last answer, KeyPodResent counts the
	// requests sent again, KeyPodError is the client's last failure.
	KeyPodAnswered   = "pod_answered"
	KeyPodLastAnswer = "pod_last_answer"
	KeyPodResent     = "pod_resent"
	KeyPodError      = "pod_error"
)

// podBeat is the client's request interval: slow enough that the
// connection's queues are empty most of the time (a request is answered
// in well under it), so that a dump rarely freezes one in flight.
const podBeat = 500 * time.Millisecond

// podResend is how long the client waits for an answer before it sends
// the request again.
const podResend = 2 * time.Second

func init() {
	Register(Mode{Name: ModePodServer, Description: "a server on the unix socket " + PodSocket + " of the pod's volume, answering and counting requests", Run: runPodServer})
	Register(Mode{Name: ModePodClient, Description: "a sidecar keeping one connection to " + PodSocket + ", a request every beat, resent on timeout", Run: runPodClient})
	container.Register(NewWorkload("pod-server", "a pod's server: answers requests on the unix socket "+PodSocket+" of the pod's shared volume ("+Name+" "+ModePodServer+")", ModePodServer, nil, verifyPodServer))
	container.Register(NewWorkload("pod-client", "a pod's sidecar: one connection to the server's unix socket "+PodSocket+" on the pod's shared volume ("+Name+" "+ModePodClient+")", ModePodClient, nil, verifyPodClient))
}

func runPodServer(ctx context.Context, s *State, _ []string) error {
	if err := os.MkdirAll(filepath.Dir(PodSocket), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(PodSocket), err)
	}
	// A socket file left by an earlier run of the pod is not ours.
	_ = os.Remove(PodSocket)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: PodSocket, Net: "unix"})
	if err != nil {
		return fmt.Errorf("listen on %s: %w", PodSocket, err)
	}
	// The file stays for the restore: CRIU binds the socket to it again.
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	var mu sync.Mutex
	served := 0
	serve := func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			n, ok := strings.CutPrefix(strings.TrimSpace(line), "req ")
			if !ok {
				continue
			}
			mu.Lock()
			served++
			count := served
			mu.Unlock()
			if _, err := fmt.Fprintf(c, "ok %s %d\n", n, count); err != nil {
				return
			}
			_ = s.Set(KeyPodServed, strconv.Itoa(count))
		}
	}
	if err := s.Ready("pod_socket", PodSocket, KeyPodServed, "0"); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", PodSocket, err)
		}
		go serve(c)
	}
}

// dialPod connects to the server's socket, waiting for the server to come
// up: the containers of a pod start in any order.
func dialPod(ctx context.Context) (*net.UnixConn, error) {
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: PodSocket, Net: "unix"})
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to %s: %w", PodSocket, err)
		case <-time.After(beatInterval):
		}
	}
}

func runPodClient(ctx context.Context, s *State, _ []string) error {
	c, err := dialPod(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	answered, resent := 0, 0
	// ask sends request n and waits for its answer, sending it again
	// after each podResend; answers to earlier requests (late ones) are
	// skipped.
	ask := func(n int) (string, error) {
		for {
			if _, err := fmt.Fprintf(c, "req %d\n", n); err != nil {
				return "", fmt.Errorf("send request %d: %w", n, err)
			}
			_ = c.SetReadDeadline(time.Now().Add(podResend))
			for {
				line, err := r.ReadString('\n')
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				if err != nil {
					return "", fmt.Errorf("read the answer to request %d: %w", n, err)
				}
				f := strings.Fields(line)
				if len(f) == 3 && f[0] == "ok" && f[1] == strconv.Itoa(n) {
					return strings.TrimSpace(line), nil
				}
			}
			resent++
			_ = s.Set(KeyPodResent, strconv.Itoa(resent))
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
		}
	}
	first, err := ask(1)
	if err != nil {
		return err
	}
	answered = 1
	if err := s.Ready(KeyPodAnswered, "1", KeyPodLastAnswer, first, KeyPodResent, "0"); err != nil {
		return err
	}
	t := time.NewTicker(podBeat)
	defer t.Stop()
	for n := 2; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		a, err := ask(n)
		if err != nil {
			// The one connection is gone: the client does not reconnect,
			// so that a probe sees the connection itself carry on.
			_ = s.Set(KeyPodError, err.Error())
			<-ctx.Done()
			return nil
		}
		answered++
		if err := s.Set(KeyPodAnswered, strconv.Itoa(answered), KeyPodLastAnswer, a); err != nil {
			return err
		}
	}
}

// verifyPodServer checks that the restored server answers more requests
// than it had at the dump.
func verifyPodServer(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
	now, err := countPastWith(ctx, p, before, KeyPodServed, KeyError)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the server on %s still answers: %s requests served at the dump, %s now", PodSocket, before[KeyPodServed], now[KeyPodServed]), nil
}

// verifyPodClient checks that the client's one connection still gets
// answers: more than at the dump, the last one newer.
func verifyPodClient(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
	now, err := countPastWith(ctx, p, before, KeyPodAnswered, KeyPodError)
	if err != nil {
		return "", err
	}
	if now[KeyPodLastAnswer] == before[KeyPodLastAnswer] {
		return "", fmt.Errorf("the client's last answer is still %q, the one of the dump", now[KeyPodLastAnswer])
	}
	return fmt.Sprintf("the client's connection to %s still answers: %s answers at the dump (last %q), %s now (last %q), %s resent", PodSocket,
		before[KeyPodAnswered], before[KeyPodLastAnswer], now[KeyPodAnswered], now[KeyPodLastAnswer], now[KeyPodResent]), nil
}
