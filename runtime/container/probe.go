package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/proc"
)

// Probe looks at a running container from outside, through /proc: its
// files via /proc/PID/root and its processes via /proc/PID.
type Probe struct {
	// PID is the container init's pid in the prober's pid namespace.
	PID int
	// ProcRoot is where proc is mounted; "/proc" when empty.
	ProcRoot string
}

func (p Probe) proc() string {
	if p.ProcRoot == "" {
		return "/proc"
	}
	return p.ProcRoot
}

// Path returns the path through which the prober reaches the container
// path cpath.
func (p Probe) Path(cpath string) string {
	return filepath.Join(p.proc(), strconv.Itoa(p.PID), "root", filepath.Clean("/"+cpath))
}

// ReadFile reads a file of the container.
func (p Probe) ReadFile(cpath string) ([]byte, error) {
	return os.ReadFile(p.Path(cpath))
}

// Alive reports whether the container init exists and is not a zombie.
func (p Probe) Alive() bool {
	return processAlive(p.proc(), p.PID)
}

func processAlive(procRoot string, pid int) bool {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself contain ") ".
	s := string(data)
	i := strings.LastIndex(s, ") ")
	if i < 0 || i+2 >= len(s) {
		return false
	}
	st := s[i+2]
	return st != 'Z' && st != 'X'
}

// Cmdline returns the argv of process pid (in the prober's view).
func (p Probe) Cmdline(pid int) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(p.proc(), strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00"), nil
}

// Tree returns the pids (in the prober's view) of the container init and
// all its descendants, init first (proc.FS.Walk).
func (p Probe) Tree() ([]int, error) {
	fs := proc.New(p.proc())
	out := []int{}
	_, err := fs.Walk(p.PID, func(pid int) error {
		if _, err := fs.Tasks(pid); err != nil {
			return err
		}
		out = append(out, pid)
		return nil
	})
	switch {
	case err == nil:
		return out, nil
	case len(out) > 0:
		return nil, err
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("the container init %d is gone", p.PID)
	}
	return nil, fmt.Errorf("container init %d: %w", p.PID, err)
}

// errNotYet tells poll to try again.
var errNotYet = errors.New("not yet")

// pollInterval is how often a probe retries: a tenth of the counter's
// period.
const pollInterval = 20 * time.Millisecond

// poll calls f until it returns nil or an error other than errNotYet, the
// container init dies, or ctx ends. what says what was awaited, for the
// error.
func (p Probe) poll(ctx context.Context, what string, f func() error) error {
	var last error
	for {
		err := f()
		if err == nil {
			return nil
		}
		if !errors.Is(err, errNotYet) {
			return err
		}
		last = err
		if !p.Alive() {
			return fmt.Errorf("%s: the container init %d is gone (%v)", what, p.PID, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(pollInterval):
		}
	}
}

// notYet wraps err so that poll retries.
func notYet(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errNotYet, fmt.Sprintf(format, args...))
}

// unixHTTP sends GET path over the unix socket at sock (a prober path).
func unixHTTP(ctx context.Context, sock, path string) (int, string, error) {
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			DisableKeepAlives: true,
		},
		Timeout: 5 * time.Second,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://container"+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// redisDo sends one command over the unix socket at sock in RESP and
// returns the reply: a simple string, an integer or a bulk string (nil
// for a missing key).
func redisDo(ctx context.Context, sock string, args ...string) (*string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, b.String()); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("read redis reply: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty redis reply")
	}
	switch line[0] {
	case '+', ':':
		s := line[1:]
		return &s, nil
	case '-':
		return nil, fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return nil, fmt.Errorf("bad redis reply %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, fmt.Errorf("read redis reply: %w", err)
		}
		s := string(buf[:n])
		return &s, nil
	}
	return nil, fmt.Errorf("unexpected redis reply %q", line)
}
