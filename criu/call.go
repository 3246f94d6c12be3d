package criu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/kata-cr/kata-cr/internal/execgroup"
)

// DefaultCallLimit bounds a dump or a restore whose context has no
// deadline: every CRIU call has a time limit.
const DefaultCallLimit = 10 * time.Minute

// DefaultFreezeTimeout is CRIU's own time limit (--timeout) for seizing
// the tree of a dump when DumpOpts.FreezeTimeout is zero. CRIU's default
// is 10 s; a guest under TCG is slower.
const DefaultFreezeTimeout = 30 * time.Second

// ErrHung says CRIU did not answer within the call's time limit: it was
// killed with everything it had started.
var ErrHung = errors.New("criu did not answer within its time limit")

// call sends one dump or restore request to `criu swrk` and answers CRIU's
// notifications with onNotify (given CRIU's pid) until the final answer.
// CRIU runs in a
// process group of its own. The call's time limit is ctx's deadline
// (DefaultCallLimit without one); only the limit ends it early, not ctx's
// cancellation, since a dump or restore stopped midway could leave the tree
// half done. When the limit passes, the group is killed and the error is
// ErrHung. keep are files CRIU must find at their own numbers
// (--inherit-fd).
func (b *Binary) call(ctx context.Context, req *rpc.CriuReq, onNotify func(n *rpc.CriuNotify, criuPID int) error, keep []*os.File) (*rpc.CriuResp, time.Duration, error) {
	limit := DefaultCallLimit
	if dl, ok := ctx.Deadline(); ok {
		limit = time.Until(dl)
	}
	if limit <= 0 {
		return nil, 0, fmt.Errorf("criu %s: %w", req.GetType(), context.DeadlineExceeded)
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("criu swrk: socketpair: %w", err)
	}
	local := os.NewFile(uintptr(fds[0]), "criu-swrk-client")
	remote := os.NewFile(uintptr(fds[1]), "criu-swrk-server")
	defer local.Close()
	// CRIU takes the socket and the inherited files at their own
	// numbers: clear close-on-exec for the start, set it again after.
	for _, f := range append([]*os.File{remote}, keep...) {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_SETFD, 0); err != nil {
			remote.Close()
			return nil, 0, fmt.Errorf("criu swrk: pass fd %d: %w", f.Fd(), err)
		}
		defer unix.CloseOnExec(int(f.Fd()))
	}
	var stderr bytes.Buffer
	cmd := execgroup.Command(lctx, b.Path, "swrk", fmt.Sprint(remote.Fd()))
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Start()
	// Only the child may hold the server end: when criu exits, reads on
	// ours see EOF instead of blocking.
	remote.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("start criu swrk: %w", err)
	}
	resp, ioErr := swrkExchange(local, req)
	for ioErr == nil && resp.GetType() == rpc.CriuReqType_NOTIFY {
		nerr := onNotify(resp.GetNotify(), cmd.Process.Pid)
		resp, ioErr = swrkExchange(local, &rpc.CriuReq{Type: rpc.CriuReqType_NOTIFY.Enum(), NotifySuccess: proto.Bool(nerr == nil)})
	}
	local.Close()
	waitErr := cmd.Wait()
	took := time.Since(start)
	switch {
	case lctx.Err() != nil && (ioErr != nil || !resp.GetSuccess()):
		return nil, took, fmt.Errorf("criu %s: %w: no answer within %s; killed", req.GetType(), ErrHung, limit.Round(time.Second))
	case ioErr != nil:
		return nil, took, fmt.Errorf("criu swrk: %w%s", ioErr, quoteStderr(stderr.Bytes(), waitErr))
	case resp.GetType() != req.GetType():
		return nil, took, fmt.Errorf("criu swrk: answered %s to %s", resp.GetType(), req.GetType())
	case !resp.GetSuccess():
		return resp, took, fmt.Errorf("criu %s failed: %s (errno %d)%s", req.GetType(), resp.GetCrErrmsg(), resp.GetCrErrno(), quoteStderr(stderr.Bytes(), nil))
	}
	return resp, took, nil
}
