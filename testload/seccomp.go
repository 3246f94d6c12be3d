package testload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ModeSeccomp installs a seccomp filter on every thread that makes
// getppid(2) fail with EPERM, and checks every beat that it still does.
const ModeSeccomp = "seccomp"

func init() {
	Register(Mode{Name: ModeSeccomp, Description: "a seccomp filter (all threads) that makes getppid fail with EPERM, checked every beat", Run: runSeccomp})
	registerWorkload(NewWorkload("seccomp", "a process under a seccomp filter making getppid fail with EPERM ("+Name+" "+ModeSeccomp+")",
		ModeSeccomp, nil, carriedKeys(ModeSeccomp, stateKeys{same: []string{"seccomp_acts", "seccomp_mode", "seccomp_filters"}})))
}

// auditArch is the AUDIT_ARCH_ value of the architectures the filter
// knows.
var auditArch = map[string]uint32{
	"amd64": unix.AUDIT_ARCH_X86_64,
	"arm64": unix.AUDIT_ARCH_AARCH64,
}

// getppidFilter is a classic BPF seccomp program: getppid of the native
// architecture fails with EPERM, everything else is allowed.
func getppidFilter(arch uint32) []unix.SockFilter {
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		// Offsets in struct seccomp_data.
		offNr   = 0
		offArch = 4
	)
	return []unix.SockFilter{
		{Code: ldAbs, K: offArch},
		{Code: jeq, K: arch, Jt: 0, Jf: 3},
		{Code: ldAbs, K: offNr},
		{Code: jeq, K: unix.SYS_GETPPID, Jt: 0, Jf: 1},
		{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: ret, K: unix.SECCOMP_RET_ALLOW},
	}
}

func runSeccomp(ctx context.Context, s *State, _ []string) error {
	arch, ok := auditArch[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
	}
	// Kata's agent sets no_new_privs already; a filter needs it (or
	// CAP_SYS_ADMIN).
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	filter := getppidFilter(arch)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("install the seccomp filter: %w", errno)
	}
	runtime.KeepAlive(filter)
	return readyAndBeat(ctx, s, func() ([]string, error) {
		acts := "yes"
		if _, _, errno := unix.Syscall(unix.SYS_GETPPID, 0, 0, 0); !errors.Is(errno, unix.EPERM) {
			acts = fmt.Sprintf("no: getppid gave errno %d, not EPERM", errno)
		}
		mode, filters, err := seccompStatus()
		if err != nil {
			return nil, err
		}
		return []string{"seccomp_acts", acts, "seccomp_mode", mode, "seccomp_filters", filters}, nil
	})
}

// seccompStatus reads the Seccomp and Seccomp_filters lines of
// /proc/self/status (the latter from Linux 5.9).
func seccompStatus() (mode, filters string, err error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "", "", err
	}
	filters = "unknown"
	for _, l := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(l, ":")
		switch k {
		case "Seccomp":
			mode = strings.TrimSpace(v)
		case "Seccomp_filters":
			filters = strings.TrimSpace(v)
		}
	}
	return mode, filters, nil
}
