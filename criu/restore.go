package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"google.golang.org/protobuf/proto"
)

// InheritFD hands one of our open files to the restored tree in place of
// the external resource CRIU saved under Key (`--inherit-fd fd[N]:Key`),
// such as a new pty for a terminal or the peer of a stream unix socket.
type InheritFD struct {
	Key  string
	File *os.File
}

// RestoreOpts are the options of one restore.
type RestoreOpts struct {
	// ImagesDir holds the images of the dump.
	ImagesDir string
	// WorkDir receives the log; ImagesDir when empty.
	WorkDir string
	// LogFile is the log's file name inside WorkDir; RestoreLogName when
	// empty.
	LogFile string
	// InheritFDs become --inherit-fd.
	InheritFDs []InheritFD
	// Set holds the CRIU options. Its Root is the directory that becomes
	// the restored mount namespace's root (the container's prepared
	// rootfs); each of its ExternalMounts is mounted from its Path in
	// place of the mount the dump declared external under its Key.
	// RestoreSibling makes the restored tree's root our child rather than
	// criu swrk's, so that we can wait for it (and reap it) like a
	// container we started. OrphanPtsMaster restores a pty whose master
	// was outside the tree (dumped with --orphan-pts-master); CRIU then
	// sends the new master over the RPC socket, where go-criu drops it:
	// the restored terminal loses its master.
	criuopt.Set
}

// Args returns the options as criu command-line words, --inherit-fd last.
func (o RestoreOpts) Args() []string {
	a := o.RestoreArgs()
	for _, f := range o.InheritFDs {
		a = append(a, "--inherit-fd", "fd["+strconv.Itoa(int(f.File.Fd()))+"]:"+f.Key)
	}
	return a
}

// rpcOpts builds the swrk request's options.
func (o RestoreOpts) rpcOpts(ctx context.Context, imagesFD, workFD int, logName string) (*rpc.CriuOpts, error) {
	opts, err := rpcOpts(ctx, o.Set, criuopt.Restore, imagesFD, workFD, logName)
	if err != nil {
		return nil, err
	}
	for _, f := range o.InheritFDs {
		opts.InheritFd = append(opts.InheritFd, &rpc.InheritFd{Key: proto.String(f.Key), Fd: proto.Int32(int32(f.File.Fd()))})
	}
	return opts, nil
}

// RestoreResult is what a successful restore produced.
type RestoreResult struct {
	// PID is the restored tree's root in the caller's pid namespace.
	PID      int
	LogPath  string
	Duration time.Duration
	Args     []string
}

// Restore restores the tree dumped in o.ImagesDir through criu swrk, always
// with a log at LogLevel, and returns the restored root's pid. On failure
// the error is an *Error quoting the log. Like Dump, it is not cancelled
// midway; ctx's deadline is its time limit (and CRIU's timeout), after
// which CRIU and what it started are killed and the error says it hung.
func (b *Binary) Restore(ctx context.Context, o RestoreOpts) (*RestoreResult, error) {
	if o.ImagesDir == "" {
		return nil, errors.New("criu restore: no images directory given")
	}
	if _, err := os.Stat(filepath.Join(o.ImagesDir, "inventory.img")); err != nil {
		return nil, fmt.Errorf("criu restore: %s holds no CRIU images: %w", o.ImagesDir, err)
	}
	dirs, err := openDirs(o.ImagesDir, o.WorkDir, o.LogFile, RestoreLogName)
	if err != nil {
		return nil, fmt.Errorf("criu restore: %w", err)
	}
	defer dirs.close()
	opts, err := o.rpcOpts(ctx, int(dirs.images.Fd()), int(dirs.work.Fd()), dirs.logName)
	if err != nil {
		return nil, fmt.Errorf("criu restore: %w", err)
	}
	// The restored root's pid comes in CRIU's answer. No notification is
	// asked for: each is a round trip between CRIU and kata-cr in the
	// middle of the restore, and a raw `criu restore` has none.
	var pid int32
	notify := func(n *rpc.CriuNotify, _ int) error {
		if n.GetScript() == "post-restore" {
			pid = n.GetPid()
		}
		return nil
	}
	keep := make([]*os.File, 0, len(o.InheritFDs))
	for _, f := range o.InheritFDs {
		keep = append(keep, f.File)
	}
	resp, d, err := b.call(ctx, &rpc.CriuReq{Type: rpc.CriuReqType_RESTORE.Enum(), Opts: opts}, notify, keep)
	if err != nil {
		return nil, newError("restore", dirs.logPath, err)
	}
	if pid <= 0 {
		pid = resp.GetRestore().GetPid()
	}
	if pid <= 0 {
		return nil, newError("restore", dirs.logPath, errors.New("criu reported success but did not say the restored pid"))
	}
	return &RestoreResult{PID: int(pid), LogPath: dirs.logPath, Duration: d, Args: o.Args()}, nil
}
