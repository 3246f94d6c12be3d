package testload

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ModeIOUring holds an io_uring instance open.
const ModeIOUring = "io-uring"

func init() {
	Register(Mode{Name: ModeIOUring, Description: "holds an io_uring instance (io_uring_setup) open, checked every beat", Run: runIOUring})
	registerWorkload(NewWorkload("io-uring", "a process holding an io_uring instance open ("+Name+" "+ModeIOUring+")",
		ModeIOUring, nil, carriedKeys(ModeIOUring, stateKeys{same: []string{"io_uring_fd", "io_uring_file"}})))
}

// ioUringParams is struct io_uring_params (120 bytes), which
// io_uring_setup fills in.
type ioUringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  [10]uint32
	cqOff                                                                  [10]uint32
}

func runIOUring(ctx context.Context, s *State, _ []string) error {
	var p ioUringParams
	r, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return fmt.Errorf("io_uring_setup: %w", errno)
	}
	fd := strconv.Itoa(int(r))
	return readyAndBeat(ctx, s, func() ([]string, error) {
		target, err := os.Readlink("/proc/self/fd/" + fd)
		if err != nil {
			target = "gone: " + err.Error()
		}
		return []string{"io_uring_fd", fd, "io_uring_file", target, "io_uring_sq_entries", strconv.FormatUint(uint64(p.sqEntries), 10)}, nil
	})
}
