package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	gocriu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
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
	RestoreLogName = "restore.log"
)

// ExternalMount names a mount CRIU saves by reference. On dump, Path is the
// mount point inside the dumped mount namespace and the option is
// `--external mnt[Path]:Key`; on restore, Path is the source to mount in
// its place and the option is `--external mnt[Key]:Path`.
type ExternalMount struct {
	Key  string `json:"key"`
	Path string `json:"path"`
}

// The --manage-cgroups modes.
var cgroupModes = map[string]rpc.CriuCgMode{
	"ignore": rpc.CriuCgMode_IGNORE,
	"none":   rpc.CriuCgMode_CG_NONE,
	"props":  rpc.CriuCgMode_PROPS,
	"soft":   rpc.CriuCgMode_SOFT,
	"full":   rpc.CriuCgMode_FULL,
	"strict": rpc.CriuCgMode_STRICT,
}

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

	LeaveRunning   bool
	ShellJob       bool
	FileLocks      bool
	TCPEstablished bool
	ExtUnixSk      bool
	// OrphanPtsMaster lets CRIU dump a pty whose master is outside the
	// tree (the launcher holds it).
	OrphanPtsMaster bool
	// ExternalMounts become `--external mnt[Path]:Key`.
	ExternalMounts []ExternalMount
	// External holds other --external values, such as "unix[12345]".
	External []string
	// SkipMounts become --skip-mnt: the mount is left out of the images,
	// and a restore silently lacks it.
	SkipMounts []string
	// ManageCgroups is a --manage-cgroups mode; CRIU's default when empty.
	ManageCgroups string
	// Root is --root: the root of the dumped mount namespace.
	Root string
	// ProcRoot is where Dump reads the live tree while CRIU holds it
	// frozen; "/proc" when empty.
	ProcRoot string
}

// options is o as a table, read by Args, ParseDumpArgs and rpcOpts.
func (o *DumpOpts) options() optionSet {
	return optionSet{
		flags: []flagOpt{
			{"--leave-running", &o.LeaveRunning},
			{"--shell-job", &o.ShellJob},
			{"--file-locks", &o.FileLocks},
			{"--tcp-established", &o.TCPEstablished},
			{"--ext-unix-sk", &o.ExtUnixSk},
			{"--orphan-pts-master", &o.OrphanPtsMaster},
		},
		mounts:   &o.ExternalMounts,
		external: &o.External,
		skip:     &o.SkipMounts,
		cgroups:  &o.ManageCgroups,
		root:     &o.Root,
	}
}

// Args returns the options as criu command-line words, for reports and for
// the plan shown before a dump.
func (o DumpOpts) Args() []string {
	return o.options().args()
}

// ParseDumpArgs turns criu dump command-line words (a finding's
// Fix.CRIUOptions) into DumpOpts. It knows the options kata-cr uses and
// rejects any other, naming it.
func ParseDumpArgs(args []string) (DumpOpts, error) {
	var o DumpOpts
	err := o.options().parse(args)
	return o, err
}

// optionSet lists the criu options of one operation (dump or restore) with
// the fields that hold them, so that the words shown in plans and reports
// and the words parsed from findings cannot drift apart. The RPC request
// takes the value options from it too; its flags are fields of their own
// per operation.
type optionSet struct {
	flags []flagOpt
	// restore flips external mounts: `mnt[Path]:Key` on dump names the
	// mount point, `mnt[Key]:Path` on restore names the source.
	restore  bool
	mounts   *[]ExternalMount
	external *[]string
	// skip is nil for restore, which has no --skip-mnt.
	skip    *[]string
	cgroups *string
	root    *string
}

type flagOpt struct {
	name string
	on   *bool
}

func (m ExternalMount) word(restore bool) string {
	if restore {
		return "mnt[" + m.Key + "]:" + m.Path
	}
	return "mnt[" + m.Path + "]:" + m.Key
}

// externals returns the --external values, mounts first.
func (s optionSet) externals() []string {
	var out []string
	for _, m := range *s.mounts {
		out = append(out, m.word(s.restore))
	}
	return append(out, *s.external...)
}

// args returns the words; extra (restore's --inherit-fd) goes before
// --manage-cgroups and --root.
func (s optionSet) args(extra ...string) []string {
	var a []string
	for _, f := range s.flags {
		if *f.on {
			a = append(a, f.name)
		}
	}
	for _, e := range s.externals() {
		a = append(a, "--external", e)
	}
	if s.skip != nil {
		for _, m := range *s.skip {
			a = append(a, "--skip-mnt", m)
		}
	}
	a = append(a, extra...)
	if *s.cgroups != "" {
		a = append(a, "--manage-cgroups="+*s.cgroups)
	}
	if *s.root != "" {
		a = append(a, "--root", *s.root)
	}
	return a
}

// parse reads words in either form, "--name VALUE" or "--name=VALUE",
// into the set's fields.
func (s optionSet) parse(args []string) error {
	for i := 0; i < len(args); i++ {
		word := args[i]
		name, val, hasVal := strings.Cut(word, "=")
		if on := s.flag(name); on != nil && !hasVal {
			*on = true
			continue
		}
		switch name {
		case "--external", "--manage-cgroups", "--root":
		case "--skip-mnt":
			if s.skip == nil {
				return fmt.Errorf("criu option %q: not one kata-cr passes to criu", word)
			}
		default:
			return fmt.Errorf("criu option %q: not one kata-cr passes to criu", word)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return fmt.Errorf("criu option %s: missing its value", name)
			}
			i++
			val = args[i]
		}
		switch name {
		case "--external":
			if a, b, ok := parseMntExternal(val); !ok {
				*s.external = append(*s.external, val)
			} else if s.restore {
				*s.mounts = append(*s.mounts, ExternalMount{Key: a, Path: b})
			} else {
				*s.mounts = append(*s.mounts, ExternalMount{Path: a, Key: b})
			}
		case "--skip-mnt":
			*s.skip = append(*s.skip, val)
		case "--manage-cgroups":
			if _, err := cgroupMode(val); err != nil {
				return err
			}
			*s.cgroups = val
		case "--root":
			*s.root = val
		}
	}
	return nil
}

func (s optionSet) flag(name string) *bool {
	for _, f := range s.flags {
		if f.name == name {
			return f.on
		}
	}
	return nil
}

// rpcOpts builds the part of a swrk request that dump and restore share;
// the caller sets the flags, whose RPC fields differ.
func (s optionSet) rpcOpts(ctx context.Context, imagesFD, workFD int, logName string) (*rpc.CriuOpts, error) {
	opts := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(imagesFD)),
		WorkDirFd:   proto.Int32(int32(workFD)),
		LogLevel:    proto.Int32(LogLevel),
		LogFile:     proto.String(logName),
		External:    s.externals(),
	}
	if *s.cgroups != "" {
		m, err := cgroupMode(*s.cgroups)
		if err != nil {
			return nil, err
		}
		opts.ManageCgroups = proto.Bool(true)
		opts.ManageCgroupsMode = &m
	}
	if *s.root != "" {
		opts.Root = proto.String(*s.root)
	}
	if err := setTimeout(ctx, opts); err != nil {
		return nil, err
	}
	return opts, nil
}

// parseMntExternal splits "mnt[A]:B" into A and B.
func parseMntExternal(v string) (inner, key string, ok bool) {
	rest, found := strings.CutPrefix(v, "mnt[")
	if !found {
		return "", "", false
	}
	i := strings.Index(rest, "]:")
	if i < 0 {
		return "", "", false
	}
	return rest[:i], rest[i+2:], true
}

func cgroupMode(name string) (rpc.CriuCgMode, error) {
	if m, ok := cgroupModes[name]; ok {
		return m, nil
	}
	names := make([]string, 0, len(cgroupModes))
	for n := range cgroupModes {
		names = append(names, n)
	}
	sort.Strings(names)
	return 0, fmt.Errorf("--manage-cgroups %q: want one of %s", name, strings.Join(names, ", "))
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

// treeNotify reads the live tree at post-dump, while the tree is frozen.
// It never fails the dump: a notification error would abort it.
type treeNotify struct {
	gocriu.NoNotify
	procRoot string
	pid      int
	tree     []Process
	err      error
}

func (n *treeNotify) PostDump() error {
	n.tree, n.err = LiveTree(n.procRoot, n.pid)
	return nil
}

// Error is a failed dump or restore. It carries the log, quoted: the error
// lines with the lines before them, and kata-cr's explanations of them.
type Error struct {
	// Op is "dump" or "restore".
	Op      string
	LogPath string
	// ErrorLines are the log's "Error (...)" lines, without timestamps.
	ErrorLines   []string
	Explanations []reports.Explanation
	Err          error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("criu %s failed", e.Op)
	if h := e.Headline(); h != "" {
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
	e := &Error{Op: op, LogPath: logPath, Err: err}
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
// the log. A dump cannot be cancelled once CRIU has frozen the tree
// (killing CRIU then could leave the workload stopped), so ctx is checked
// before it starts and its deadline becomes CRIU's timeout for freezing
// the tree.
func (b *Binary) Dump(ctx context.Context, o DumpOpts) (*DumpResult, error) {
	if o.PID <= 0 {
		return nil, fmt.Errorf("criu dump: pid %d: give the pid of the tree's root", o.PID)
	}
	if o.ImagesDir == "" {
		return nil, errors.New("criu dump: no images directory given")
	}
	if err := os.MkdirAll(o.ImagesDir, 0o700); err != nil {
		return nil, fmt.Errorf("criu dump: %w", err)
	}
	if err := os.Chmod(o.ImagesDir, 0o700); err != nil {
		return nil, fmt.Errorf("criu dump: %w", err)
	}
	dirs, err := openDirs(o.ImagesDir, o.WorkDir, o.LogFile, DumpLogName)
	if err != nil {
		return nil, fmt.Errorf("criu dump: %w", err)
	}
	defer dirs.close()
	opts, err := o.rpcOpts(ctx, int(dirs.images.Fd()), int(dirs.work.Fd()), dirs.logName)
	if err != nil {
		return nil, fmt.Errorf("criu dump: %w", err)
	}
	c := gocriu.MakeCriu()
	c.SetCriuPath(b.Path)
	procRoot := o.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	n := &treeNotify{procRoot: procRoot, pid: o.PID}
	start := time.Now()
	err = c.Dump(opts, n)
	d := time.Since(start)
	if err != nil {
		return nil, newError("dump", dirs.logPath, err)
	}
	if n.tree == nil && n.err == nil {
		n.err = errors.New("criu sent no post-dump notification")
	}
	return &DumpResult{ImagesDir: o.ImagesDir, LogPath: dirs.logPath, Duration: d, Args: o.Args(), Tree: n.tree, TreeErr: n.err}, nil
}

// rpcOpts builds the swrk request's options.
func (o DumpOpts) rpcOpts(ctx context.Context, imagesFD, workFD int, logName string) (*rpc.CriuOpts, error) {
	opts, err := o.options().rpcOpts(ctx, imagesFD, workFD, logName)
	if err != nil {
		return nil, err
	}
	opts.Pid = proto.Int32(int32(o.PID))
	opts.LeaveRunning = proto.Bool(o.LeaveRunning)
	opts.ShellJob = proto.Bool(o.ShellJob)
	opts.FileLocks = proto.Bool(o.FileLocks)
	opts.TcpEstablished = proto.Bool(o.TCPEstablished)
	opts.ExtUnixSk = proto.Bool(o.ExtUnixSk)
	opts.OrphanPtsMaster = proto.Bool(o.OrphanPtsMaster)
	opts.SkipMnt = o.SkipMounts
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
