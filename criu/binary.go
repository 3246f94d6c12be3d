// Package criu runs and asks the criu binary: its version, `criu check`,
// feature checks, and dump and restore through go-criu's swrk RPC.
package criu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/internal/execgroup"
)

// DefaultPath is where Debian's criu package installs the binary. It is
// tried last because /usr/sbin is often missing from a non-root PATH.
const DefaultPath = "/usr/sbin/criu"

// CheckTimeout bounds one `criu check` run when the caller's context has no
// earlier deadline: kerndat probing takes a few seconds at most even under
// TCG, so a run that takes longer is stuck.
const CheckTimeout = 60 * time.Second

// ErrNotFound is returned by Find when no criu binary is available.
var ErrNotFound = errors.New("no criu binary found: install criu (apt-get install criu) or pass --criu PATH")

// Binary is one criu executable.
type Binary struct {
	// Path is the absolute path of the executable.
	Path string

	// cache holds answers that cannot change while kata-cr runs; nil (as
	// in a Binary{Path: p} literal) means no caching.
	cache *binaryCache
}

type binaryCache struct {
	mu sync.Mutex
	// done is set once the version was asked for; a failure is kept too,
	// so a broken criu is not started again by every check that asks.
	done    bool
	version Version
	err     error
}

// Find returns the criu binary to use: path when given (the --criu flag),
// else criu on PATH, else DefaultPath.
func Find(path string) (*Binary, error) {
	if path != "" {
		abs, err := executable(path)
		if err != nil {
			return nil, fmt.Errorf("criu binary %s: %w", path, err)
		}
		return newBinary(abs), nil
	}
	if p, err := exec.LookPath("criu"); err == nil {
		if abs, err := executable(p); err == nil {
			return newBinary(abs), nil
		}
	}
	if abs, err := executable(DefaultPath); err == nil {
		return newBinary(abs), nil
	}
	return nil, ErrNotFound
}

// ErrNotCRIU says a binary does not answer like CRIU.
var ErrNotCRIU = errors.New("does not answer like CRIU")

// Open finds the criu binary as Find does and believes it only when it
// answers like CRIU: its version over the swrk RPC, or a `criu --version`
// in CRIU's own words, each within versionTimeout.
func Open(ctx context.Context, path string) (*Binary, Version, error) {
	b, err := Find(path)
	if err != nil {
		return nil, Version{}, err
	}
	v, err := b.Version(ctx)
	if err != nil {
		return nil, Version{}, fmt.Errorf("criu binary %s %w: %v", b.Path, ErrNotCRIU, err)
	}
	return b, v, nil
}

// versionTimeout bounds each way of asking criu for its version: a real
// criu answers in milliseconds.
const versionTimeout = 5 * time.Second

func newBinary(path string) *Binary {
	return &Binary{Path: path, cache: &binaryCache{}}
}

// executable returns the absolute path of p when it is an executable
// regular file.
func executable(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errors.New("no such file: install criu (apt-get install criu) or pass the path of a criu binary")
		}
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", errors.New("not a regular file: pass the path of a criu binary")
	}
	if st.Mode().Perm()&0o111 == 0 {
		return "", errors.New("not executable: chmod +x it or pass another criu binary")
	}
	return abs, nil
}

// Version is a CRIU release number.
type Version struct {
	Major, Minor, Sublevel int
}

// Int returns the version as one number, major*10000+minor*100+sublevel,
// the form go-criu and runc compare: 3.17.1 is 31701.
func (v Version) Int() int {
	return v.Major*10000 + v.Minor*100 + v.Sublevel
}

// String returns "3.17.1", or "4.1" when the sublevel is 0.
func (v Version) String() string {
	if v.Sublevel == 0 {
		return fmt.Sprintf("%d.%d", v.Major, v.Minor)
	}
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Sublevel)
}

// IsZero reports whether v is unset.
func (v Version) IsZero() bool { return v == Version{} }

// VersionFromInt is the inverse of Version.Int.
func VersionFromInt(n int) Version {
	return Version{Major: n / 10000, Minor: n / 100 % 100, Sublevel: n % 100}
}

var versionRE = regexp.MustCompile(`(?m)^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?`)

// ParseVersion reads the output of `criu --version` ("Version: 3.17.1",
// perhaps followed by a GitID line).
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("no \"Version: X.Y\" line in %q", excerpt.FirstLine(strings.TrimSpace(out)))
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Sublevel, _ = strconv.Atoi(m[3])
	}
	return v, nil
}

// Version asks criu for its version through the swrk VERSION RPC and, when
// that fails (an old criu, a broken service socket), parses
// `criu --version`.
func (b *Binary) Version(ctx context.Context) (Version, error) {
	if b.cache == nil {
		return b.version(ctx)
	}
	b.cache.mu.Lock()
	defer b.cache.mu.Unlock()
	if !b.cache.done {
		b.cache.version, b.cache.err = b.version(ctx)
		b.cache.done = ctx.Err() == nil
	}
	return b.cache.version, b.cache.err
}

func (b *Binary) version(ctx context.Context) (Version, error) {
	v, rpcErr := b.rpcVersion(ctx)
	if rpcErr != nil {
		var err error
		v, err = b.execVersion(ctx)
		if err != nil {
			return Version{}, fmt.Errorf("get criu version: %w", errors.Join(rpcErr, err))
		}
	}
	return v, nil
}

// rpcVersion sends VERSION over swrk. It does the RPC itself rather than
// through go-criu's GetCriuVersion so that it can be cancelled, so that
// swrk's stderr (go-criu sends it to /dev/null) is quoted on failure, and
// so that a git build is not reported as the next minor release (go-criu
// bumps the minor number when a gitid is set).
func (b *Binary) rpcVersion(ctx context.Context) (Version, error) {
	t := rpc.CriuReqType_VERSION
	resp, err := b.swrk(ctx, &rpc.CriuReq{Type: &t})
	if err != nil {
		return Version{}, err
	}
	rv := resp.GetVersion()
	if resp.GetType() != rpc.CriuReqType_VERSION || rv == nil {
		return Version{}, fmt.Errorf("criu swrk: unexpected answer %s to VERSION", resp.GetType())
	}
	return Version{Major: int(rv.GetMajorNumber()), Minor: int(rv.GetMinorNumber()), Sublevel: int(rv.GetSublevel())}, nil
}

func (b *Binary) execVersion(ctx context.Context) (Version, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, err := execgroup.Command(ctx, b.Path, "--version").CombinedOutput()
	if err != nil {
		return Version{}, fmt.Errorf("run %s --version: %w: %s", b.Path, err, excerpt.FirstLine(strings.TrimSpace(string(out))))
	}
	return ParseVersion(string(out))
}

// swrk runs `criu swrk` for one request and returns its answer. The
// service's stderr is captured and quoted when the request fails.
func (b *Binary) swrk(ctx context.Context, req *rpc.CriuReq) (*rpc.CriuResp, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("criu swrk: socketpair: %w", err)
	}
	local := os.NewFile(uintptr(fds[0]), "criu-swrk-client")
	remote := os.NewFile(uintptr(fds[1]), "criu-swrk-server")
	defer local.Close()

	var stderr bytes.Buffer
	// The child's end becomes fd 3 (the first of ExtraFiles).
	cmd := execgroup.Command(ctx, b.Path, "swrk", "3")
	cmd.ExtraFiles = []*os.File{remote}
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		remote.Close()
		return nil, fmt.Errorf("start criu swrk: %w", err)
	}
	// Only the child may hold the server end: when criu exits, reads on
	// ours see EOF instead of blocking.
	remote.Close()

	resp, ioErr := swrkExchange(local, req)
	local.Close()
	waitErr := cmd.Wait()
	if ioErr != nil {
		if ctx.Err() != nil {
			ioErr = fmt.Errorf("%w (%v)", ioErr, ctx.Err())
		}
		return nil, fmt.Errorf("criu swrk: %w%s", ioErr, quoteStderr(stderr.Bytes(), waitErr))
	}
	if !resp.GetSuccess() {
		return resp, fmt.Errorf("criu swrk: request %s failed: %s (errno %d)%s",
			req.GetType(), resp.GetCrErrmsg(), resp.GetCrErrno(), quoteStderr(stderr.Bytes(), nil))
	}
	return resp, nil
}

func swrkExchange(sk *os.File, req *rpc.CriuReq) (*rpc.CriuResp, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	if _, err := sk.Write(data); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	buf := make([]byte, 64<<10)
	n, err := sk.Read(buf)
	if errors.Is(err, io.EOF) {
		// os.File turns an empty read into EOF: criu exited without an answer.
		return nil, errors.New("read answer: criu closed the socket")
	}
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	resp := &rpc.CriuResp{}
	if err := proto.Unmarshal(buf[:n], resp); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	return resp, nil
}

func quoteStderr(stderr []byte, waitErr error) string {
	var parts []string
	if waitErr != nil {
		parts = append(parts, waitErr.Error())
	}
	if s := strings.TrimSpace(string(stderr)); s != "" {
		parts = append(parts, excerpt.TailLines(s, 5))
	}
	if len(parts) == 0 {
		return ""
	}
	return ": " + strings.Join(parts, ": ")
}

// The categories of `criu check`.
const (
	CategoryRequired     = ""             // criu check
	CategoryExtra        = "extra"        // criu check --extra
	CategoryExperimental = "experimental" // criu check --experimental
	CategoryAll          = "all"          // criu check --all
)

// CheckResult is the outcome of one `criu check` run.
type CheckResult struct {
	// Args is the argv that was run, without the binary.
	Args []string
	// ExitCode is criu's exit status; OK is ExitCode == 0.
	ExitCode int
	OK       bool
	// Lines holds what criu printed on stdout and stderr followed by its
	// log file (verbosity 4, with timestamps), in that order.
	Lines []string
	// Errors holds the lines of Lines that report an error or a warning.
	Errors []string
	// Verdict is criu's closing sentence ("Looks good.", "NAME is
	// supported"), empty when criu stopped before printing one.
	Verdict  string
	Duration time.Duration
}

// Check runs `criu check` for category (CategoryRequired, CategoryExtra,
// CategoryExperimental or CategoryAll). A failed check is a result, not an
// error: the error is for when criu could not be run or timed out.
func (b *Binary) Check(ctx context.Context, category string) (CheckResult, error) {
	var args []string
	switch category {
	case CategoryRequired:
		args = []string{"check"}
	case CategoryExtra, CategoryExperimental, CategoryAll:
		args = []string{"check", "--" + category}
	default:
		return CheckResult{}, fmt.Errorf("criu check category %q: use \"\", extra, experimental or all", category)
	}
	return b.runCheck(ctx, args)
}

// KerndatCache is where CRIU keeps what it probed of the kernel, reused by
// every later invocation while the file exists (CRIU writes it only on a
// tmpfs).
const KerndatCache = "/run/criu.kdat"

// ForgetKerndat removes CRIU's kernel probe cache: after modules were
// loaded, what CRIU probed before no longer holds.
func ForgetKerndat() error {
	if err := os.Remove(KerndatCache); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("forget CRIU's kernel probes: %w", err)
	}
	return nil
}

// FeatureError says that criu did not get as far as checking a feature:
// it does not know the name, or it failed before (kerndat, privileges).
type FeatureError struct {
	Feature string
	// Unknown is true when this criu does not know the feature.
	Unknown bool
	Result  CheckResult
}

func (e *FeatureError) Error() string {
	if e.Unknown {
		return fmt.Sprintf("criu check --feature %s: this criu does not know the feature", e.Feature)
	}
	msg := "criu failed before checking it"
	if len(e.Result.Errors) > 0 {
		msg += ": " + StripLogPrefix(e.Result.Errors[len(e.Result.Errors)-1])
	}
	return fmt.Sprintf("criu check --feature %s: %s", e.Feature, msg)
}

// Feature asks criu whether it and the kernel support feature name, with
// `criu check --feature NAME`: a real answer, unlike go-criu's
// FeatureCheck which echoes the request. detail is criu's reason (its
// last error line) or its verdict. err is a *FeatureError when criu did not
// get to the feature, another error when criu could not be run.
func (b *Binary) Feature(ctx context.Context, name string) (supported bool, detail string, err error) {
	if name == "" || strings.HasPrefix(name, "-") {
		return false, "", fmt.Errorf("criu feature %q: not a feature name", name)
	}
	res, err := b.runCheck(ctx, []string{"check", "--feature", name})
	if err != nil {
		return false, "", err
	}
	if res.OK {
		return true, res.Verdict, nil
	}
	if fe := featureFailure(name, res); fe != nil {
		return false, "", fe
	}
	detail = res.Verdict
	if len(res.Errors) > 0 {
		detail = StripLogPrefix(res.Errors[len(res.Errors)-1])
	}
	if detail == "" {
		detail = fmt.Sprintf("criu exited with status %d", res.ExitCode)
	}
	return false, detail, nil
}

// featureFailure recognises a run in which criu stopped before the feature
// check itself: its option parser did not know the name, it could not
// initialise kerndat, or it is not root (cr_check refuses before any
// feature).
func featureFailure(name string, res CheckResult) *FeatureError {
	for _, l := range res.Lines {
		switch {
		case strings.Contains(l, "Unknown feature"):
			return &FeatureError{Feature: name, Unknown: true, Result: res}
		case strings.Contains(l, "Could not initialize kernel features detection"),
			strings.Contains(l, "need to be root"),
			strings.Contains(l, "Unknown option"):
			return &FeatureError{Feature: name, Result: res}
		}
	}
	return nil
}

func (b *Binary) runCheck(ctx context.Context, args []string) (CheckResult, error) {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "kata-cr-criu-check-")
	if err != nil {
		return CheckResult{}, fmt.Errorf("criu %s: make log dir: %w", strings.Join(args, " "), err)
	}
	defer os.RemoveAll(dir)
	logPath := filepath.Join(dir, "check.log")
	full := append(append([]string{}, args...), "-v4", "--log-file", logPath)

	var out bytes.Buffer
	cmd := execgroup.Command(ctx, b.Path, full...)
	cmd.Dir = dir
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	runErr := cmd.Run()
	res := CheckResult{Args: args, Duration: time.Since(start)}
	if ctx.Err() != nil {
		return res, fmt.Errorf("criu %s: %w after %s", strings.Join(args, " "), ctx.Err(), res.Duration.Round(time.Millisecond))
	}
	var exitErr *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &exitErr):
		res.ExitCode = exitErr.ExitCode()
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return res, fmt.Errorf("criu %s: killed by %s", strings.Join(args, " "), ws.Signal())
		}
	default:
		return res, fmt.Errorf("run criu %s: %w", strings.Join(args, " "), runErr)
	}
	res.OK = res.ExitCode == 0
	res.Lines = splitLines(out.Bytes())
	logData, err := os.ReadFile(logPath)
	if err != nil && res.OK {
		// CRIU opens its --log-file before it checks anything (only a bad
		// argument fails before that): a passing check without a log is
		// not CRIU's.
		return res, fmt.Errorf("criu %s wrote no log (%v): its output %q is not CRIU's", strings.Join(args, " "), err, excerpt.Clip(strings.Join(res.Lines, " | "), 200))
	}
	res.Lines = append(res.Lines, splitLines(logData)...)
	for _, l := range res.Lines {
		body := StripLogPrefix(l)
		switch {
		case strings.HasPrefix(body, "Error"), strings.HasPrefix(body, "Warn"):
			res.Errors = append(res.Errors, l)
		case isVerdict(body):
			res.Verdict = body
		}
	}
	return res, nil
}

// isVerdict recognises the sentences cr_check ends with.
func isVerdict(s string) bool {
	return s == "Looks good." || s == "Does not look good." ||
		strings.HasPrefix(s, "Looks good but some kernel features are missing") ||
		strings.HasSuffix(s, " is supported")
}

func splitLines(b []byte) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := strings.TrimRight(sc.Text(), " \t\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// StripLogPrefix removes the "(00.123456) " timestamp criu puts in front of
// log lines at verbosity 3 and above; a line without one is only trimmed.
func StripLogPrefix(l string) string {
	l = strings.TrimSpace(l)
	if strings.HasPrefix(l, "(") {
		if i := strings.Index(l, ") "); i > 0 && i < 16 {
			return strings.TrimSpace(l[i+2:])
		}
	}
	return l
}
