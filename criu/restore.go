package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	gocriu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"golang.org/x/sys/unix"
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

// pidNotify takes the restored root's pid from the post-restore
// notification: go-criu's Restore does not return CRIU's answer, which
// holds it.
type pidNotify struct {
	gocriu.NoNotify
	pid int32
}

func (n *pidNotify) PostRestore(pid int32) error {
	n.pid = pid
	return nil
}

// Restore restores the tree dumped in o.ImagesDir through criu swrk, always
// with a log at LogLevel, and returns the restored root's pid. On failure
// the error is an *Error quoting the log. Like Dump, it cannot be cancelled
// midway; ctx is checked before it starts and its deadline becomes CRIU's
// timeout.
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
	// criu swrk is started by go-criu without ExtraFiles, so an inherited
	// file reaches it by keeping its number across exec: clear
	// close-on-exec for the restore, set it again after.
	for _, f := range o.InheritFDs {
		fd := int(f.File.Fd())
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			return nil, fmt.Errorf("criu restore: pass fd %d for %s: %w", fd, f.Key, err)
		}
		defer unix.CloseOnExec(fd)
	}
	c := gocriu.MakeCriu()
	c.SetCriuPath(b.Path)
	n := &pidNotify{}
	start := time.Now()
	err = c.Restore(opts, n)
	d := time.Since(start)
	if err != nil {
		return nil, newError("restore", dirs.logPath, err)
	}
	if n.pid <= 0 {
		return nil, newError("restore", dirs.logPath, errors.New("criu reported success but sent no post-restore notification with the pid"))
	}
	return &RestoreResult{PID: int(n.pid), LogPath: dirs.logPath, Duration: d, Args: o.Args()}, nil
}
