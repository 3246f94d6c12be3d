package testload

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/proc"
)

// Modes and files of the record lock scenarios.
const (
	// ModeLockPosix holds a POSIX record lock (F_SETLK) on PosixLockFile.
	ModeLockPosix = "lock-posix"
	// ModeLockOFD holds an open file description lock (F_OFD_SETLK) on
	// OFDLockFile.
	ModeLockOFD   = "lock-ofd"
	PosixLockFile = "/run/kata-cr-posix.lock"
	OFDLockFile   = "/run/kata-cr-ofd.lock"
	// KeyLockHeld is "yes" while /proc/locks lists the mode's lock (and,
	// for an OFD lock, another open file of it sees the conflict).
	KeyLockHeld = "lock_held"
)

func init() {
	Register(Mode{Name: ModeLockPosix, Description: "holds a POSIX record lock (fcntl F_SETLK) on " + PosixLockFile, Run: func(ctx context.Context, s *State, _ []string) error {
		return runRecordLock(ctx, s, PosixLockFile, unix.F_SETLK, "POSIX")
	}})
	Register(Mode{Name: ModeLockOFD, Description: "holds an open file description lock (fcntl F_OFD_SETLK) on " + OFDLockFile, Run: func(ctx context.Context, s *State, _ []string) error {
		return runRecordLock(ctx, s, OFDLockFile, unix.F_OFD_SETLK, "OFDLCK")
	}})
	keys := stateKeys{same: []string{KeyLockHeld, "lock_kind"}}
	registerWorkload(NewWorkload("lock-posix", "a POSIX record lock held on a file of the container ("+Name+" "+ModeLockPosix+")",
		ModeLockPosix, nil, carriedKeys(ModeLockPosix, keys)))
	registerWorkload(NewWorkload("lock-ofd", "an open file description lock held on a file of the container ("+Name+" "+ModeLockOFD+")",
		ModeLockOFD, nil, carriedKeys(ModeLockOFD, keys)))
}

// runRecordLock write-locks all of path with the fcntl command cmd and
// checks every beat that the lock is still there, as /proc/locks lists
// it (kind POSIX or OFDLCK) and as another open file of path sees it.
func runRecordLock(ctx context.Context, s *State, path string, cmd int, kind string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(uintptr(fd), cmd, &lk); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		// The file's device and inode are read again every beat: a
		// restored container's /run is a new tmpfs, its files new inodes.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, err
		}
		held, err := recordLockHeld(path, st, kind)
		if err != nil {
			return nil, err
		}
		return []string{KeyLockHeld, held, "lock_kind", kind}, nil
	})
}

// recordLockHeld says "yes" when /proc/locks lists a lock of kind on the
// file st describes (held by this process for a POSIX lock) and, for an
// OFD lock, a lock test through another open file of path conflicts;
// otherwise what is missing.
func recordLockHeld(path string, st unix.Stat_t, kind string) (string, error) {
	locks, err := proc.New("/proc").Locks()
	if err != nil {
		return "", fmt.Errorf("read /proc/locks: %w", err)
	}
	listed := false
	for _, l := range locks {
		if !l.Blocked && l.Kind == kind && l.Major == unix.Major(st.Dev) && l.Minor == unix.Minor(st.Dev) && l.Inode == st.Ino &&
			(kind != "POSIX" || l.PID == os.Getpid()) {
			listed = true
		}
	}
	if !listed {
		return "no: /proc/locks lists no " + kind + " lock on " + path, nil
	}
	if kind != "OFDLCK" {
		return "yes", nil
	}
	// Another open file description conflicts with the lock, even in the
	// same process.
	other, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open %s again: %w", path, err)
	}
	defer unix.Close(other)
	probe := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(uintptr(other), unix.F_OFD_GETLK, &probe); err != nil {
		return "", fmt.Errorf("test the lock on %s: %w", path, err)
	}
	if probe.Type == unix.F_UNLCK {
		return "no: another open file of " + path + " can lock it", nil
	}
	return "yes", nil
}
