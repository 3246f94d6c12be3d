package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"github.com/kata-cr/kata-cr/criu/criuopt"
	"github.com/kata-cr/kata-cr/criulog"
	"github.com/kata-cr/kata-cr/reports"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// LogLevel is the verbosity of every dump and restore log: 4 is the level
// at which CRIU says why it failed, with the lines that lead up to it.
const LogLevel = 4

// The default log file names, inside the work directory.
const (
	DumpLogName    = "dump.log"
	PreDumpLogName = "pre-dump.log"
	RestoreLogName = "restore.log"
)

// ExternalMount names a mount CRIU saves by reference (see criuopt.Mount).
type ExternalMount = criuopt.Mount

// DumpOpts are the options of one dump.
type DumpOpts struct {
	// PID is the root of the tree to dump, in the caller's pid namespace.
	PID int
	// ImagesDir receives the images; it is created 0700 when missing.
	ImagesDir string
	// WorkDir receives the log (and CRIU's scratch files); ImagesDir when
	// empty.
	WorkDir string
	// LogFile is the log's file name inside WorkDir; DumpLogName when
	// empty.
	LogFile string
	// ProcRoot is where Dump reads the live tree while CRIU holds it
	// frozen; "/proc" when empty.
	ProcRoot string
	// FreezeTimeout is CRIU's own time limit for seizing the tree (its
	// --timeout); DefaultFreezeTimeout when zero. After it CRIU gives up
	// on a task it cannot stop ("Unseizable non-zombie ... state D").
	FreezeTimeout time.Duration
	// TrackMem turns on the kernel's soft-dirty tracking of the tree's
	// memory (--track-mem), so that a later dump given these images as
	// its parent writes only the pages changed since.
	TrackMem bool
	// ParentDir is the previous pre-dump's images directory, relative to
	// ImagesDir (--prev-images-dir): CRIU links it as ImagesDir/parent and
	// does not write again the pages unchanged since.
	ParentDir string
	// AtPostDump, when set, is called with CRIU's pid at its post-dump
	// notification: the images are written and CRIU still holds the tree
	// stopped, waiting for the answer. kata-cr's fault tests kill CRIU
	// there.
	AtPostDump func(criuPID int)
	// Frozen, when set, runs at CRIU's post-dump notification, the images
	// written and the tree still frozen: an error aborts the dump (CRIU
	// thaws the tree) and is part of the dump's error.
	Frozen func() error
	// Set holds the CRIU options (--leave-running, --file-locks,
	// --external...); its DumpArgs are them as criu words.
	criuopt.Set
}

// rpcOpts builds the part of a swrk request that dump and restore share:
// the directories, the log and the options of op in set.
func rpcOpts(ctx context.Context, set criuopt.Set, op criuopt.Op, imagesFD, workFD int, logName string) (*rpc.CriuOpts, error) {
	opts := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(imagesFD)),
		WorkDirFd:   proto.Int32(int32(workFD)),
		LogLevel:    proto.Int32(LogLevel),
		LogFile:     proto.String(logName),
	}
	if err := set.RPC(op, opts); err != nil {
		return nil, err
	}
	if err := setTimeout(ctx, opts); err != nil {
		return nil, err
	}
	return opts, nil
}

// DumpResult is what a successful dump produced.
type DumpResult struct {
	ImagesDir string
	LogPath   string
	Duration  time.Duration
	// Args are the options as criu command-line words.
	Args []string
	// Tree is the live process tree as it was while CRIU held it frozen
	// (read at the post-dump notification), the one the images must
	// match: a tree read before the dump races with short-lived children.
	// Nil when it could not be read; TreeErr says why.
	Tree    []Process
	TreeErr error
}

// VerifyTree checks the images' process tree against the frozen live one.
func (r *DumpResult) VerifyTree() error {
	if r.Tree == nil {
		return fmt.Errorf("verify dumped tree: the live tree was not read: %v", r.TreeErr)
	}
	dumped, err := ReadPstree(r.ImagesDir)
	if err != nil {
		return err
	}
	return CompareTrees(dumped, r.Tree)
}

// Error is a failed dump or restore. It carries the log, quoted: the error
// lines with the lines before them, and kata-cr's explanations of them.
type Error struct {
	// Op is "dump" or "restore".
	Op      string
	LogPath string
	// Hung says CRIU did not answer within the call's time limit and was
	// killed (ErrHung).
	Hung bool
	// Aborted is why kata-cr failed CRIU's post-dump notification, which
	// made CRIU give the dump up (DumpOpts.Frozen).
	Aborted error
	// ErrorLines are the log's "Error (...)" lines, without timestamps.
	ErrorLines   []string
	Explanations []reports.Explanation
	Err          error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("criu %s failed", e.Op)
	if e.Hung {
		msg = fmt.Sprintf("criu %s hung", e.Op)
	}
	if e.Aborted != nil {
		msg = fmt.Sprintf("criu %s aborted by kata-cr while the tree was frozen: %v", e.Op, e.Aborted)
	} else if h := e.Headline(); h != "" && !e.Hung {
		msg += ": " + h
	} else {
		msg += ": " + strings.ReplaceAll(e.Err.Error(), "\n", ": ")
	}
	if e.LogPath != "" {
		msg += " (log: " + e.LogPath + ")"
	}
	return msg
}

// Headline is the log line that best says why CRIU failed: the first one
// kata-cr knows, else the first error line.
func (e *Error) Headline() string {
	for _, x := range e.Explanations {
		if x.Known && len(x.Quote) > 0 {
			return stripTimestamp(x.Quote[len(x.Quote)-1])
		}
	}
	if len(e.ErrorLines) > 0 {
		return e.ErrorLines[0]
	}
	return ""
}

func (e *Error) Unwrap() error { return e.Err }

// newError reads the log at logPath and builds the Error for err.
func newError(op, logPath string, err error) *Error {
	e := &Error{Op: op, LogPath: logPath, Err: err, Hung: errors.Is(err, ErrHung)}
	data, rerr := os.ReadFile(logPath)
	if rerr != nil {
		e.Err = fmt.Errorf("%w (and the log cannot be read: %v)", err, rerr)
		e.LogPath = ""
		return e
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	e.ErrorLines = LogErrors(lines)
	e.Explanations = criulog.ExplainLines(logPath, lines)
	return e
}

// LogErrors returns CRIU's error lines ("Error (file:line): message")
// among lines, without their timestamps.
func LogErrors(lines []string) []string {
	var out []string
	for _, l := range lines {
		t := stripTimestamp(l)
		if strings.HasPrefix(t, "Error (") {
			out = append(out, t)
		}
	}
	return out
}

// stripTimestamp removes the "(00.123456) " CRIU puts before log lines.
func stripTimestamp(l string) string {
	t := strings.TrimSpace(l)
	if strings.HasPrefix(t, "(") {
		if i := strings.Index(t, ") "); i > 0 && i < 16 {
			t = t[i+2:]
		}
	}
	return t
}

// Dump checkpoints the process tree rooted at o.PID through criu swrk,
// always with a log at LogLevel. On failure the error is an *Error quoting
// the log. ctx's cancellation does not stop a dump that has started (CRIU
// holds the tree); its deadline is the dump's time limit, after which CRIU
// is killed and the error says it hung (Error.Hung): its ptrace hold on
// the tree ends with it, and the tree runs on.
func (b *Binary) Dump(ctx context.Context, o DumpOpts) (*DumpResult, error) {
	dirs, opts, err := o.prepare(ctx, "dump", DumpLogName)
	if err != nil {
		return nil, err
	}
	defer dirs.close()
	procRoot := o.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	// The live tree is read at post-dump, while CRIU holds it frozen; it
	// never fails the dump, since a notification error aborts it. Only
	// o.Frozen may.
	var tree []Process
	var treeErr, frozenErr error
	notify := func(n *rpc.CriuNotify, criuPID int) error {
		if n.GetScript() == "post-dump" {
			tree, treeErr = LiveTree(procRoot, o.PID)
			if o.AtPostDump != nil {
				o.AtPostDump(criuPID)
			}
			if o.Frozen != nil {
				frozenErr = o.Frozen()
				return frozenErr
			}
		}
		return nil
	}
	_, d, err := b.call(ctx, &rpc.CriuReq{Type: rpc.CriuReqType_DUMP.Enum(), Opts: opts}, notify, nil)
	if err != nil {
		e := newError("dump", dirs.logPath, err)
		e.Aborted = frozenErr
		return nil, e
	}
	if tree == nil && treeErr == nil {
		treeErr = errors.New("criu sent no post-dump notification")
	}
	return &DumpResult{ImagesDir: o.ImagesDir, LogPath: dirs.logPath, Duration: d, Args: o.DumpArgs(), Tree: tree, TreeErr: treeErr}, nil
}

// PreDump copies the memory of the tree rooted at o.PID into o.ImagesDir
// while the tree runs on (CRIU stops it only to collect the pages it will
// write), with soft-dirty tracking on so that the next pre-dump or the
// final dump, given these images as parent, writes only what changed.
// Errors are as Dump's.
func (b *Binary) PreDump(ctx context.Context, o DumpOpts) (*DumpResult, error) {
	o.TrackMem = true
	// Only the memory is copied: the tree is not left stopped or killed.
	o.LeaveRunning = false
	dirs, opts, err := o.prepare(ctx, "pre-dump", PreDumpLogName)
	if err != nil {
		return nil, err
	}
	defer dirs.close()
	opts.NotifyScripts = proto.Bool(false)
	_, d, err := b.call(ctx, &rpc.CriuReq{Type: rpc.CriuReqType_PRE_DUMP.Enum(), Opts: opts}, func(*rpc.CriuNotify, int) error { return nil }, nil)
	if err != nil {
		return nil, newError("pre-dump", dirs.logPath, err)
	}
	return &DumpResult{ImagesDir: o.ImagesDir, LogPath: dirs.logPath, Duration: d, Args: o.DumpArgs()}, nil
}

// prepare checks o, creates the images directory 0700, opens the
// directories and builds the request's options for op (dump or
// pre-dump), whose log is defaultLog unless o names one. The caller
// closes dirs.
func (o DumpOpts) prepare(ctx context.Context, op, defaultLog string) (*dirFDs, *rpc.CriuOpts, error) {
	if o.PID <= 0 {
		return nil, nil, fmt.Errorf("criu %s: pid %d: give the pid of the tree's root", op, o.PID)
	}
	if o.ImagesDir == "" {
		return nil, nil, fmt.Errorf("criu %s: no images directory given", op)
	}
	if err := os.MkdirAll(o.ImagesDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("criu %s: %w", op, err)
	}
	if err := os.Chmod(o.ImagesDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("criu %s: %w", op, err)
	}
	dirs, err := openDirs(o.ImagesDir, o.WorkDir, o.LogFile, defaultLog)
	if err != nil {
		return nil, nil, fmt.Errorf("criu %s: %w", op, err)
	}
	opts, err := o.rpcOpts(ctx, int(dirs.images.Fd()), int(dirs.work.Fd()), dirs.logName)
	if err != nil {
		dirs.close()
		return nil, nil, fmt.Errorf("criu %s: %w", op, err)
	}
	return dirs, opts, nil
}

// rpcOpts builds the swrk request's options.
func (o DumpOpts) rpcOpts(ctx context.Context, imagesFD, workFD int, logName string) (*rpc.CriuOpts, error) {
	opts, err := rpcOpts(ctx, o.Set, criuopt.Dump, imagesFD, workFD, logName)
	if err != nil {
		return nil, err
	}
	opts.Pid = proto.Int32(int32(o.PID))
	opts.NotifyScripts = proto.Bool(true)
	if o.TrackMem {
		opts.TrackMem = proto.Bool(true)
	}
	if o.ParentDir != "" {
		opts.ParentImg = proto.String(o.ParentDir)
	}
	freeze := o.FreezeTimeout
	if freeze <= 0 {
		freeze = DefaultFreezeTimeout
	}
	opts.Timeout = proto.Uint32(uint32((freeze + time.Second - 1) / time.Second))
	return opts, nil
}

// setTimeout turns ctx's deadline into CRIU's timeout (whole seconds).
func setTimeout(ctx context.Context, opts *rpc.CriuOpts) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		secs := int(time.Until(dl) / time.Second)
		if secs < 1 {
			return context.DeadlineExceeded
		}
		opts.Timeout = proto.Uint32(uint32(secs))
	}
	return nil
}

// checkLogName enforces CRIU's rule for log_file over RPC: a plain name in
// the work directory.
func checkLogName(name string) error {
	if strings.Contains(name, "/") || name == "." || name == ".." {
		return fmt.Errorf("log file %q: give a file name; the log goes into the work directory", name)
	}
	return nil
}

// dirFDs holds the images and work directories open for the RPC: criu swrk
// opens them through /proc/<our pid>/fd. The log goes into the work
// directory.
type dirFDs struct {
	images, work *os.File
	logName      string
	logPath      string
}

// openDirs opens the directories of one swrk call, creating the work
// directory (imagesDir when empty) 0700; logFile defaults to defaultLog.
func openDirs(imagesDir, workDir, logFile, defaultLog string) (*dirFDs, error) {
	if workDir == "" {
		workDir = imagesDir
	}
	if logFile == "" {
		logFile = defaultLog
	}
	if err := checkLogName(logFile); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(workDir, 0o700); err != nil {
		return nil, err
	}
	img, err := openDir(imagesDir)
	if err != nil {
		return nil, err
	}
	work, err := openDir(workDir)
	if err != nil {
		img.Close()
		return nil, err
	}
	return &dirFDs{images: img, work: work, logName: logFile, logPath: filepath.Join(workDir, logFile)}, nil
}

func openDir(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

func (d *dirFDs) close() {
	d.images.Close()
	d.work.Close()
}
