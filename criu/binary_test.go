package criu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
)

func TestVersion(t *testing.T) {
	tests := []struct {
		v    Version
		n    int
		want string
	}{
		{Version{3, 17, 1}, 31701, "3.17.1"},
		{Version{4, 1, 0}, 40100, "4.1"},
		{Version{4, 1, 1}, 40101, "4.1.1"},
		{Version{3, 19, 0}, 31900, "3.19"},
	}
	for _, tt := range tests {
		if got := tt.v.Int(); got != tt.n {
			t.Errorf("%v.Int() = %d, want %d", tt.v, got, tt.n)
		}
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%v.String() = %q, want %q", tt.v, got, tt.want)
		}
		if got := VersionFromInt(tt.n); got != tt.v {
			t.Errorf("VersionFromInt(%d) = %v, want %v", tt.n, got, tt.v)
		}
	}
}

// TestSwrkNoAnswer: a criu that reads the request and exits without an
// answer is said to have closed the socket (os.File reports the empty read
// as EOF, not as zero bytes).
func TestSwrkNoAnswer(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	local, remote := os.NewFile(uintptr(fds[0]), "client"), os.NewFile(uintptr(fds[1]), "server")
	defer local.Close()
	go func() {
		defer remote.Close()
		remote.Read(make([]byte, 4096))
	}()
	typ := rpc.CriuReqType_VERSION
	if _, err := swrkExchange(local, &rpc.CriuReq{Type: &typ}); err == nil || !strings.Contains(err.Error(), "criu closed the socket") {
		t.Errorf("swrkExchange with no answer = %v, want \"criu closed the socket\"", err)
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{"Version: 3.17.1\n", Version{3, 17, 1}, false},
		{"Version: 4.1\nGitID: v4.1-12-gabc\n", Version{4, 1, 0}, false},
		{"Version: 4.1.1\n", Version{4, 1, 1}, false},
		{"warning: something\nVersion: 3.19\n", Version{3, 19, 0}, false},
		{"", Version{}, true},
		{"criu: command not found", Version{}, true},
		{"Version: x.y", Version{}, true},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStripLogPrefix(t *testing.T) {
	tests := map[string]string{
		"(00.018919) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds": "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds",
		"Error (criu/util.c:642): exited, status=1":                                 "Error (criu/util.c:642): exited, status=1",
		"  Looks good.": "Looks good.",
		"(not a timestamp but a long parenthesis) text": "(not a timestamp but a long parenthesis) text",
	}
	for in, want := range tests {
		if got := StripLogPrefix(in); got != want {
			t.Errorf("StripLogPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFeatureFailure(t *testing.T) {
	tests := []struct {
		name        string
		lines       []string
		wantNil     bool
		wantUnknown bool
	}{
		{"unknown", []string{"Error (criu/cr-check.c:1642): Unknown feature bogus"}, false, true},
		{"kerndat", []string{"(00.018966) Error (criu/crtools.c:260): Could not initialize kernel features detection."}, false, false},
		{"not supported", []string{"(00.001) Error (criu/cr-check.c:1000): UFFD is not supported"}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := featureFailure("x", CheckResult{Lines: tt.lines})
			if (fe == nil) != tt.wantNil {
				t.Fatalf("featureFailure = %v, want nil %v", fe, tt.wantNil)
			}
			if fe != nil && fe.Unknown != tt.wantUnknown {
				t.Errorf("Unknown = %v, want %v", fe.Unknown, tt.wantUnknown)
			}
		})
	}
}

func TestFindErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing"), "no such file"},
		{dir, "not a regular file"},
		{plain, "not executable"},
	}
	for _, tt := range tests {
		_, err := Find(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("Find(%q) = %v, want an error naming the path and %q", tt.path, err, tt.want)
		}
	}
	t.Setenv("PATH", dir)
	if b, err := Find(""); err == nil {
		if b.Path != DefaultPath {
			t.Errorf("Find(\"\") with an empty PATH = %s, want %s", b.Path, DefaultPath)
		}
	} else if !errors.Is(err, ErrNotFound) {
		t.Errorf("Find(\"\") = %v, want ErrNotFound", err)
	}
}

// hostCRIU returns the host's criu; the tests below run the real binary.
func hostCRIU(t *testing.T) *Binary {
	t.Helper()
	b, err := Find("")
	if err != nil {
		t.Fatalf("these tests run the real criu: apt-get install criu (%v)", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("these tests run criu check, which needs root: run them as root")
	}
	return b
}

// hostVersion is what `criu --version` says, the reference for the RPC.
func hostVersion(t *testing.T, b *Binary) Version {
	t.Helper()
	out, err := exec.Command(b.Path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v: %s", b.Path, err, out)
	}
	v, err := ParseVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestHostVersion(t *testing.T) {
	b := hostCRIU(t)
	want := hostVersion(t, b)
	ctx := context.Background()

	rv, err := b.rpcVersion(ctx)
	if err != nil {
		t.Fatalf("swrk VERSION: %v", err)
	}
	if rv != want {
		t.Errorf("swrk VERSION = %v, criu --version = %v", rv, want)
	}
	ev, err := b.execVersion(ctx)
	if err != nil || ev != want {
		t.Errorf("execVersion = %v, %v; want %v", ev, err, want)
	}
	v, err := b.Version(ctx)
	if err != nil || v != want {
		t.Fatalf("Version = %v, %v; want %v", v, err, want)
	}
	// A broken binary path gives an error naming both attempts.
	broken := &Binary{Path: filepath.Join(t.TempDir(), "criu")}
	if _, err := broken.Version(ctx); err == nil || !strings.Contains(err.Error(), "swrk") || !strings.Contains(err.Error(), "--version") {
		t.Errorf("Version of a missing binary = %v, want an error naming swrk and --version", err)
	}
}

// hostNeedsNewerCRIU reports whether this host's kernel split the vvar
// mapping (6.13+) and its criu predates 4.1: criu check then fails on vDSO.
func hostNeedsNewerCRIU(t *testing.T, b *Binary) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var maj, min int
	if _, err := fmt.Sscanf(rel, "%d.%d", &maj, &min); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return (maj > 6 || maj == 6 && min >= 13) && hostVersion(t, b).Int() < 40100
}

func TestHostCheck(t *testing.T) {
	b := hostCRIU(t)
	vdso := hostNeedsNewerCRIU(t, b)
	for _, cat := range []string{CategoryRequired, CategoryExtra, CategoryExperimental, CategoryAll} {
		t.Run("category="+cat, func(t *testing.T) {
			res, err := b.Check(context.Background(), cat)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Lines) == 0 {
				t.Fatal("criu check produced no output and no log")
			}
			if !strings.HasPrefix(res.Lines[0], "(") && !strings.Contains(strings.Join(res.Lines, "\n"), "Version:") {
				t.Errorf("log does not look like a verbosity-4 criu log: %q", res.Lines[0])
			}
			if !vdso {
				t.Logf("criu check %s: ok=%v verdict=%q", cat, res.OK, res.Verdict)
				return
			}
			if res.OK || res.ExitCode == 0 {
				t.Fatalf("criu check %s passed on a kernel that needs CRIU 4.1+", cat)
			}
			if !containsLine(res.Errors, "Unexpected rt vDSO area bounds") {
				t.Errorf("errors do not name the vDSO failure: %q", res.Errors)
			}
		})
	}
	if _, err := b.Check(context.Background(), "--bogus"); err == nil {
		t.Error("Check with an unknown category succeeded")
	}
}

func TestHostFeature(t *testing.T) {
	b := hostCRIU(t)
	ctx := context.Background()
	_, _, err := b.Feature(ctx, "no_such_feature")
	var fe *FeatureError
	if !errors.As(err, &fe) || !fe.Unknown {
		t.Fatalf("Feature(no_such_feature) = %v, want an unknown-feature FeatureError", err)
	}
	if _, _, err := b.Feature(ctx, "--all"); err == nil {
		t.Error("Feature(--all) was passed to criu as a feature name")
	}
	ok, detail, err := b.Feature(ctx, "mem_dirty_track")
	if hostNeedsNewerCRIU(t, b) {
		if !errors.As(err, &fe) || fe.Unknown {
			t.Fatalf("Feature(mem_dirty_track) = %v, %q, %v; want a FeatureError: criu cannot initialise here", ok, detail, err)
		}
		if !strings.Contains(err.Error(), "kernel features detection") {
			t.Errorf("FeatureError %q does not quote criu's last error", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mem_dirty_track: %v (%s)", ok, detail)
}

func containsLine(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
