package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// qmpCallLimit bounds one QMP command: qemu answers them at once, the
// long work (a migration) is polled.
const qmpCallLimit = 30 * time.Second

// qmp is a client of qemu's machine protocol on a unix socket: the
// commands kata-cr needs to save a running guest as a VM template and to
// start a clone from one.
type qmp struct {
	c *net.UnixConn
	r *bufio.Reader
}

// qmpError is qemu's answer to a command that failed.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return e.Class + ": " + e.Desc }

// dialQMP connects to qemu's QMP socket at path, retrying while qemu
// starts, reads its greeting and leaves the negotiation mode.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	deadline := time.Now().Add(qmpCallLimit)
	var c *net.UnixConn
	for {
		var err error
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("connect to qemu's QMP socket: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to qemu's QMP socket: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &qmp{c: c, r: bufio.NewReader(c)}
	_ = c.SetDeadline(time.Now().Add(qmpCallLimit))
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := q.read(&greeting); err != nil || greeting.QMP == nil {
		c.Close()
		return nil, fmt.Errorf("read qemu's QMP greeting: %w", errors.Join(err, errors.New("no greeting")))
	}
	if err := q.execute("qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

// read decodes the next line from qemu into v.
func (q *qmp) read(v any) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// execute runs one command with its arguments (nil for none) and decodes
// its return value into ret (nil to ignore it). fd, when not nil, goes
// along with the command (SCM_RIGHTS), for getfd. Events that arrive in
// between are skipped.
func (q *qmp) execute(cmd string, args any, ret any, fd ...int) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	_ = q.c.SetDeadline(time.Now().Add(qmpCallLimit))
	var oob []byte
	if len(fd) > 0 {
		oob = unix.UnixRights(fd...)
	}
	if _, _, err := q.c.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *qmpError       `json:"error"`
			Event  string          `json:"event"`
		}
		if err := q.read(&resp); err != nil {
			return fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case resp.Error != nil:
			return fmt.Errorf("qmp %s: %w", cmd, resp.Error)
		case resp.Event != "":
			continue
		case ret != nil && resp.Return != nil:
			if err := json.Unmarshal(resp.Return, ret); err != nil {
				return fmt.Errorf("qmp %s: %w", cmd, err)
			}
		}
		return nil
	}
}

// status is qemu's run state ("running", "paused", "inmigrate" ...).
func (q *qmp) status() (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	err := q.execute("query-status", nil, &st)
	return st.Status, err
}

// migration is the state of the outgoing migration ("active",
// "completed", "failed") and qemu's error when it failed.
func (q *qmp) migration() (status, errDesc string, err error) {
	var m struct {
		Status    string `json:"status"`
		ErrorDesc string `json:"error-desc"`
	}
	err = q.execute("query-migrate", nil, &m)
	return m.Status, m.ErrorDesc, err
}

func (q *qmp) Close() error { return q.c.Close() }
