package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
)

// State is what a workload's Snapshot records before the dump for its
// Verify after the restore. It is plain strings so that it can travel in
// the images' manifest to the restoring guest.
type State map[string]string

// Binary is a program a workload needs beyond busybox. It is looked up by
// Name in PATH and copied, with its shared libraries, to the same path in
// the rootfs (the guest image carries it at the host's path). A binary
// InImage ships in every guest image at Path instead: the host never looks
// it up, and the guest copies it from Path.
type Binary struct {
	Name string
	// Package is the Debian package that provides it, for the error.
	Package string
	// InImage says every guest image has the program at Path
	// (RegisterImageBinary).
	InImage bool
	Path    string
}

// File is a file a workload needs in its rootfs.
type File struct {
	Path    string
	Content string
	Mode    os.FileMode
}

// Workload is a named container workload: what to run, what it needs and
// how to prove that a restored copy carried on.
type Workload struct {
	Name        string
	Description string
	Args        []string
	// Terminal says the workload wants a pty (-t).
	Terminal bool
	// CallsSetsid says the init itself runs setsid(1). busybox sh execs a
	// lone command, so setsid runs as pid 1; pid 1 leads its process
	// group (with or without Spec.Setsid), setsid() refuses a group
	// leader, so setsid forks, and pid 1 exits at once with status 0,
	// taking the container with it.
	CallsSetsid bool
	Binaries    []Binary
	Files       []File
	// Dirs are created (0755) in the rootfs.
	Dirs []string
	// Ready waits until the workload is up and has the state worth
	// checkpointing.
	Ready func(ctx context.Context, p Probe) error
	// Up, when set, waits only until the workload runs as the checks will
	// see it (its processes, files and sockets in place) while its state
	// still builds up: the checks run then, and Ready is waited for
	// before the dump.
	Up func(ctx context.Context, p Probe) error
	// Snapshot records the state Verify compares with, right before the
	// dump.
	Snapshot func(ctx context.Context, p Probe) (State, error)
	// Verify checks the restored workload against the snapshot and says
	// in one line what it saw.
	Verify func(ctx context.Context, p Probe, before State) (string, error)
	// Resources are the limits of a named workload's generated spec
	// (linux.resources, as a pod's requests and limits become): its
	// cgroup gets them.
	Resources *specs.LinuxResources
	// Spec is a bundle's runtime spec (FromBundle); nil for a named
	// workload or a command, whose spec is generated.
	Spec *specs.Spec
	// RootfsTag is the tag of the virtio-9p share that holds a bundle's
	// rootfs; PrepareWorkload mounts it instead of building a rootfs.
	RootfsTag string
}

// DefaultWorkload is the workload kata-cr checkpoints when none is named:
// the seed's.
const DefaultWorkload = "sleep"

// CommandWorkload is the name of the workload for a user's own command
// (Command), as an images manifest records it.
const CommandWorkload = "command"

// Where the stateful workloads keep what the probes read.
const (
	counterFile  = "/run/counter"
	lockFile     = "/run/lock/kata-cr.lock"
	nginxSocket  = "/run/nginx.sock"
	redisSocket  = "/run/redis.sock"
	nginxIndex   = "/var/www/index.html"
	counterReady = 10
)

// counterScript keeps its count only in the shell's memory; the file is a
// report, never read back. A restarted counter starts again from 1, a
// restored one carries on.
const counterScript = `i=0
while :; do
	i=$((i+1))
	echo "$i" > ` + counterFile + `
	sleep 0.1
done`

const nginxConf = `daemon off;
master_process on;
worker_processes 1;
user nobody nogroup;
pid /run/nginx.pid;
error_log stderr notice;
events {
	worker_connections 64;
}
http {
	access_log off;
	default_type text/html;
	server {
		listen unix:` + nginxSocket + `;
		root /var/www;
		location / {
			index index.html;
		}
	}
}
`

const nginxBody = "<h1>kata-cr nginx workload</h1>\n"

const redisConf = `port 0
unixsocket ` + redisSocket + `
unixsocketperm 700
daemonize no
supervised no
save ""
appendonly no
dir /var/lib/redis
logfile ""
databases 1
`

// Workloads is the table of named workloads.
var Workloads = []Workload{
	{
		Name:        "sleep",
		Description: "the seed's `busybox sleep 3600`",
		Args:        []string{"busybox", "sleep", "3600"},
		Ready:       readyRunning,
		Snapshot:    snapshotCmdline,
		Verify:      verifyCmdline,
	},
	{
		Name:        "seed-fix",
		Description: "the seed's proposed fix: `sh -c 'setsid sh -c \"sleep 3600\"'` (setsid cannot make pid 1 a session leader: it forks and pid 1 exits)",
		Args:        []string{"sh", "-c", `setsid sh -c "sleep 3600"`},
		CallsSetsid: true,
		Ready:       readyInTree("sleep", "3600"),
		Snapshot:    snapshotCmdline,
		Verify:      verifyInTree("sleep", "3600"),
	},
	{
		Name:        "counter",
		Description: "a shell that counts in memory every 100 ms and reports the count in " + counterFile,
		Args:        []string{"sh", "-c", counterScript},
		Ready:       readyCounter,
		Up:          upCounter,
		Snapshot:    snapshotCounter,
		Verify:      verifyCounter,
	},
	{
		Name:        "flock",
		Description: "a process holding an exclusive flock on " + lockFile,
		Args:        []string{"sh", "-c", "exec 9>" + lockFile + " && flock -x 9 && exec sleep 3600"},
		Binaries:    []Binary{{Name: "flock", Package: "util-linux"}},
		Ready:       readyLock,
		Snapshot:    snapshotLock,
		Verify:      verifyLock,
	},
	{
		Name:        "nginx",
		Description: "nginx (daemon off, one worker) serving a page on " + nginxSocket,
		Args:        []string{"nginx", "-c", "/etc/nginx/nginx.conf"},
		Binaries:    []Binary{{Name: "nginx", Package: "nginx"}},
		Files: []File{
			{Path: "/etc/nginx/nginx.conf", Content: nginxConf, Mode: 0o644},
			{Path: nginxIndex, Content: nginxBody, Mode: 0o644},
		},
		Dirs:     []string{"/var/lib/nginx/body", "/var/lib/nginx/proxy", "/var/lib/nginx/fastcgi", "/var/lib/nginx/uwsgi", "/var/lib/nginx/scgi", "/var/log/nginx"},
		Ready:    readyNginx,
		Snapshot: snapshotNginx,
		Verify:   verifyNginx,
	},
	{
		Name:        "redis",
		Description: "redis-server (no persistence) on " + redisSocket + ", holding a key set before the dump",
		Args:        []string{"redis-server", "/etc/redis/redis.conf"},
		Binaries:    []Binary{{Name: "redis-server", Package: "redis-server"}},
		Files:       []File{{Path: "/etc/redis/redis.conf", Content: redisConf, Mode: 0o644}},
		Dirs:        []string{"/var/lib/redis"},
		Ready:       readyRedis,
		Snapshot:    snapshotRedis,
		Verify:      verifyRedis,
	},
}

// Names lists the known workload names, sorted.
func Names() []string {
	out := make([]string, 0, len(Workloads))
	for _, w := range Workloads {
		out = append(out, w.Name)
	}
	sort.Strings(out)
	return out
}

// Lookup returns the named workload.
func Lookup(name string) (Workload, error) {
	for _, w := range Workloads {
		if w.Name == name {
			return w, nil
		}
	}
	return Workload{}, fmt.Errorf("unknown workload %q: known workloads are %s (or give a command after --)", name, strings.Join(Names(), ", "))
}

// LookupWorkload resolves a workload from a name and a command, as the
// command line (a name or a command after --) and an images manifest (the
// name and the argv) give them: the user's own command when name is
// CommandWorkload, or when name is empty and command is not; otherwise the
// named workload, DefaultWorkload when name is empty. A named workload's
// own argv in command is ignored.
func LookupWorkload(name string, command []string) (Workload, error) {
	switch {
	case name == CommandWorkload && len(command) > 0, name == "" && len(command) > 0:
		return Command(command), nil
	case name == "":
		name = DefaultWorkload
	}
	return Lookup(name)
}

// Command is the workload for a user's own command: it is ready when
// running and verified when the restored init runs the same argv.
func Command(args []string) Workload {
	w := Workload{
		Name:        CommandWorkload,
		Description: "the command " + strings.Join(args, " "),
		Args:        append([]string(nil), args...),
		Ready:       readyRunning,
		Snapshot:    snapshotCmdline,
		Verify:      verifyCmdline,
	}
	if len(args) > 0 {
		if b, ok := ImageBinary(args[0]); ok {
			w.Binaries = []Binary{b}
		}
	}
	return w
}

// HostFiles resolves the workload's binaries in PATH and returns them as
// PrepareRootfs wants them: container path to source path.
func (w Workload) HostFiles() (map[string]string, error) {
	out := map[string]string{}
	for _, b := range w.Binaries {
		if b.InImage {
			continue
		}
		p, err := exec.LookPath(b.Name)
		if err != nil {
			return nil, fmt.Errorf("workload %s needs %s, which is not in PATH: install it (apt-get install %s)", w.Name, b.Name, b.Package)
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.Name, err)
		}
		out[abs] = abs
	}
	return out, nil
}

// Install writes the workload's own files and directories into a prepared
// rootfs.
func (w Workload) Install(rootfs string) error {
	for _, d := range w.Dirs {
		p, err := inRoot(rootfs, d)
		if err != nil {
			return fmt.Errorf("install workload %s: %w", w.Name, err)
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("install workload %s: %w", w.Name, err)
		}
	}
	for _, f := range w.Files {
		p, err := inRoot(rootfs, f.Path)
		if err != nil {
			return fmt.Errorf("install workload %s: %w", w.Name, err)
		}
		if err := writeFile(p, []byte(f.Content), f.Mode); err != nil {
			return fmt.Errorf("install workload %s: %w", w.Name, err)
		}
	}
	return nil
}

// PrepareWorkload prepares rootfs for w: for a bundle, the overlay over the
// share of its rootfs (MountBundleRootfs); otherwise PrepareRootfs with the workload's
// binaries (run it in the guest: the InImage ones come from the image)
// plus extra (container path to source path, the --include
// files), then Install.
func PrepareWorkload(rootfs string, w Workload, extra map[string]string) error {
	if w.RootfsTag != "" {
		return MountBundleRootfs(rootfs, w.RootfsTag)
	}
	files, err := w.HostFiles()
	if err != nil {
		return err
	}
	for k, v := range w.ImageFiles() {
		files[k] = v
	}
	for k, v := range extra {
		files[k] = v
	}
	if err := PrepareRootfs(rootfs, files); err != nil {
		return err
	}
	return w.Install(rootfs)
}

func readyRunning(ctx context.Context, p Probe) error {
	// An exec'd init is up; give it a moment to fail early on a bad
	// command.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(100 * time.Millisecond):
	}
	if !p.Alive() {
		return fmt.Errorf("container init %d exited right after it started", p.PID)
	}
	return nil
}

func snapshotCmdline(_ context.Context, p Probe) (State, error) {
	argv, err := p.Cmdline(p.PID)
	if err != nil {
		return nil, fmt.Errorf("read the init's command line: %w", err)
	}
	return State{"cmdline": strings.Join(argv, "\x00")}, nil
}

// snapshotLock records the command line and whether the lock on lockFile
// is held (it must be, before the dump and after the restore).
func snapshotLock(ctx context.Context, p Probe) (State, error) {
	st, err := snapshotCmdline(ctx, p)
	if err != nil {
		return nil, err
	}
	st["lock"] = "held"
	if err := p.lockHeld(); err != nil {
		st["lock"] = "not held: " + err.Error()
	}
	return st, nil
}

func verifyCmdline(ctx context.Context, p Probe, before State) (string, error) {
	// Alive now and still a moment later: a restored process that dies
	// at once is not a restored workload.
	for i := 0; i < 2; i++ {
		if !p.Alive() {
			return "", fmt.Errorf("the restored init %d is not running", p.PID)
		}
		argv, err := p.Cmdline(p.PID)
		if err != nil {
			return "", fmt.Errorf("read the restored init's command line: %w", err)
		}
		if want := before["cmdline"]; want != "" && strings.Join(argv, "\x00") != want {
			return "", fmt.Errorf("the restored init runs %q, not %q", strings.Join(argv, " "), strings.ReplaceAll(want, "\x00", " "))
		}
		if i == 0 {
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	argv, _ := p.Cmdline(p.PID)
	return fmt.Sprintf("the restored init (pid %d) runs %q", p.PID, strings.Join(argv, " ")), nil
}

// findInTree returns the pid of a process of the container's tree (the
// init first: busybox sh execs a lone command) running exactly argv.
func (p Probe) findInTree(argv ...string) (int, error) {
	tree, err := p.Tree()
	if err != nil {
		return 0, err
	}
	want := strings.Join(argv, "\x00")
	for _, pid := range tree {
		got, err := p.Cmdline(pid)
		if err == nil && strings.Join(got, "\x00") == want {
			return pid, nil
		}
	}
	return 0, notYet("no process of the container runs %q", strings.Join(argv, " "))
}

func readyInTree(argv ...string) func(context.Context, Probe) error {
	return func(ctx context.Context, p Probe) error {
		return p.poll(ctx, "wait for "+strings.Join(argv, " "), func() error {
			_, err := p.findInTree(argv...)
			return err
		})
	}
}

func verifyInTree(argv ...string) func(context.Context, Probe, State) (string, error) {
	return func(ctx context.Context, p Probe, before State) (string, error) {
		if _, err := verifyCmdline(ctx, p, before); err != nil {
			return "", err
		}
		pid, err := p.findInTree(argv...)
		if err != nil {
			return "", fmt.Errorf("the restored tree lost its %q: %w", strings.Join(argv, " "), err)
		}
		return fmt.Sprintf("the restored container (init pid %d) runs %q as pid %d", p.PID, strings.Join(argv, " "), pid), nil
	}
}

func (p Probe) counter() (int, error) {
	data, err := p.ReadFile(counterFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, notYet("%s does not exist yet", counterFile)
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		// Caught between the shell's truncate and its write.
		return 0, notYet("%s holds %q", counterFile, data)
	}
	return n, nil
}

// upCounter waits for the counter's first count: the shell runs its loop,
// which is all the checks look at.
func upCounter(ctx context.Context, p Probe) error {
	return p.poll(ctx, "wait for the counter to start", func() error {
		_, err := p.counter()
		return err
	})
}

func readyCounter(ctx context.Context, p Probe) error {
	// Far enough from 1 that a restarted counter cannot pass Verify.
	return p.poll(ctx, fmt.Sprintf("wait for the counter to reach %d", counterReady), func() error {
		n, err := p.counter()
		if err != nil {
			return err
		}
		if n < counterReady {
			return notYet("counter at %d", n)
		}
		return nil
	})
}

func snapshotCounter(ctx context.Context, p Probe) (State, error) {
	var n int
	err := p.poll(ctx, "read the counter", func() error {
		var err error
		n, err = p.counter()
		return err
	})
	if err != nil {
		return nil, err
	}
	return State{"counter": strconv.Itoa(n)}, nil
}

func verifyCounter(ctx context.Context, p Probe, before State) (string, error) {
	dumped, err := strconv.Atoi(before["counter"])
	if err != nil {
		return "", fmt.Errorf("the snapshot has no counter value (%q)", before["counter"])
	}
	var first, now int
	err = p.poll(ctx, "read the restored counter", func() error {
		first, err = p.counter()
		return err
	})
	if err != nil {
		return "", err
	}
	// The file still shows the dumped value until the restored shell
	// writes: wait for a write.
	err = p.poll(ctx, fmt.Sprintf("wait for the restored counter to move from %d", first), func() error {
		n, err := p.counter()
		if err != nil {
			return err
		}
		if n == first {
			return notYet("counter still at %d", n)
		}
		now = n
		return nil
	})
	if err != nil {
		return "", err
	}
	if now < dumped {
		return "", fmt.Errorf("the counter restarted: %d after the restore, %d at the dump: its memory was not restored", now, dumped)
	}
	return fmt.Sprintf("the counter carried on: %d at the dump, %d after the restore", dumped, now), nil
}

// lockHeld reports whether someone holds a lock on the workload's lock
// file: /proc/locks lists one on its inode and a non-blocking flock
// conflicts.
func (p Probe) lockHeld() error {
	path := p.Path(lockFile)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return notYet("%s does not exist yet", lockFile)
		}
		return fmt.Errorf("stat %s: %w", lockFile, err)
	}
	listed, err := p.locksOn(st.Dev, st.Ino)
	if err != nil {
		return err
	}
	if !listed {
		return notYet("/proc/locks lists no lock on %s", lockFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", lockFile, err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return notYet("%s can be locked: nobody holds it", lockFile)
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("flock %s: %w", lockFile, err)
	}
	return nil
}

// locksOn reports whether /proc/locks lists a lock on the inode.
func (p Probe) locksOn(dev, ino uint64) (bool, error) {
	locks, err := proc.New(p.proc()).Locks()
	if err != nil {
		return false, fmt.Errorf("read /proc/locks: %w", err)
	}
	for _, l := range locks {
		if l.Major == unix.Major(dev) && l.Minor == unix.Minor(dev) && l.Inode == ino {
			return true, nil
		}
	}
	return false, nil
}

func readyLock(ctx context.Context, p Probe) error {
	return p.poll(ctx, "wait for the lock on "+lockFile, p.lockHeld)
}

func verifyLock(ctx context.Context, p Probe, before State) (string, error) {
	if _, err := verifyCmdline(ctx, p, before); err != nil {
		return "", err
	}
	if err := p.lockHeld(); err != nil {
		return "", fmt.Errorf("the restored workload does not hold its lock: %w", err)
	}
	return fmt.Sprintf("the restored workload (pid %d) holds its flock on %s", p.PID, lockFile), nil
}

func readyNginx(ctx context.Context, p Probe) error {
	return p.poll(ctx, "wait for nginx to answer on "+nginxSocket, func() error {
		code, body, err := unixHTTP(ctx, p.Path(nginxSocket), "/")
		if err != nil {
			return notYet("%v", err)
		}
		if code != 200 || body != nginxBody {
			return fmt.Errorf("nginx answered %d %q, want 200 with the workload's page", code, body)
		}
		return nil
	})
}

func snapshotNginx(ctx context.Context, p Probe) (State, error) {
	code, body, err := unixHTTP(ctx, p.Path(nginxSocket), "/")
	if err != nil {
		return nil, fmt.Errorf("ask nginx: %w", err)
	}
	return State{"status": strconv.Itoa(code), "body": body}, nil
}

func verifyNginx(ctx context.Context, p Probe, before State) (string, error) {
	code, body, err := unixHTTP(ctx, p.Path(nginxSocket), "/")
	if err != nil {
		return "", fmt.Errorf("the restored nginx does not answer on %s: %w", nginxSocket, err)
	}
	if strconv.Itoa(code) != before["status"] || body != before["body"] {
		return "", fmt.Errorf("the restored nginx answered %d %q, before the dump %s %q", code, body, before["status"], before["body"])
	}
	return fmt.Sprintf("the restored nginx answers %d on %s with the same page", code, nginxSocket), nil
}

func readyRedis(ctx context.Context, p Probe) error {
	return p.poll(ctx, "wait for redis to answer on "+redisSocket, func() error {
		r, err := redisDo(ctx, p.Path(redisSocket), "PING")
		if err != nil {
			return notYet("%v", err)
		}
		if r == nil || *r != "PONG" {
			return fmt.Errorf("redis answered PING with %v", r)
		}
		return nil
	})
}

func snapshotRedis(ctx context.Context, p Probe) (State, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	key, val := "kata-cr:probe", hex.EncodeToString(b)
	r, err := redisDo(ctx, p.Path(redisSocket), "SET", key, val)
	if err != nil {
		return nil, fmt.Errorf("set a redis key: %w", err)
	}
	if r == nil || *r != "OK" {
		return nil, fmt.Errorf("redis answered SET with %v", r)
	}
	return State{"key": key, "value": val}, nil
}

func verifyRedis(ctx context.Context, p Probe, before State) (string, error) {
	r, err := redisDo(ctx, p.Path(redisSocket), "GET", before["key"])
	if err != nil {
		return "", fmt.Errorf("the restored redis does not answer on %s: %w", redisSocket, err)
	}
	if r == nil {
		return "", fmt.Errorf("the restored redis lost the key %s set before the dump", before["key"])
	}
	if *r != before["value"] {
		return "", fmt.Errorf("the restored redis has %s=%q, before the dump %q", before["key"], *r, before["value"])
	}
	return fmt.Sprintf("the restored redis still has %s=%s", before["key"], *r), nil
}
