package testload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes and state keys of the live notification scenarios: a watch on a
// directory of the container, a file written in it every beat and the
// event read.
const (
	// ModeInotify watches NotifyDir with inotify.
	ModeInotify = "inotify"
	// ModeFanotify marks NotifyDir in a fanotify group that reports file
	// handles (FAN_REPORT_FID), the kind Linux 5.13 and later let a
	// process without CAP_SYS_ADMIN make: the container has no
	// CAP_SYS_ADMIN.
	ModeFanotify = "fanotify"
	// NotifyDir is the watched directory, NotifyFile the file written in
	// it every beat (container paths).
	NotifyDir  = "/run/kata-cr-notify.d"
	NotifyFile = NotifyDir + "/touched"
	// KeyNotifyFD is the descriptor of the inotify or fanotify instance,
	// KeyNotifyEvents counts the beats whose write was reported.
	KeyNotifyFD     = "notify_fd"
	KeyNotifyEvents = "notify_events"
)

func init() {
	Register(Mode{Name: ModeInotify, Description: "an inotify watch on " + NotifyDir + ", a file written there and its event read every beat", Run: runInotify})
	Register(Mode{Name: ModeFanotify, Description: "a fanotify mark (FAN_CLOSE_WRITE on children) on " + NotifyDir + ", a file written there and its event read every beat", Run: runFanotify})
	registerWorkload(NewWorkload("inotify", "a live inotify watch on a directory, a file written there and the event read every beat ("+Name+" "+ModeInotify+")",
		ModeInotify, nil, verifyNotify("inotify wd:", "inotify watch")))
	registerWorkload(NewWorkload("fanotify", "a fanotify group marking a directory for FAN_CLOSE_WRITE, a file written there and the event read every beat ("+Name+" "+ModeFanotify+")",
		ModeFanotify, nil, verifyNotify("fanotify ino:", "fanotify mark")))
}

// notifyBeats makes the watched directory's file change every beat and
// reads fd until written says the events read report it.
func notifyBeats(ctx context.Context, s *State, fd int, kv []string, written func(events []byte) (bool, error)) error {
	if err := s.Ready(append(kv, KeyNotifyFD, strconv.Itoa(fd), KeyNotifyEvents, "0")...); err != nil {
		return err
	}
	return beats(ctx, s, KeyNotifyEvents, func(n int) ([]string, error) {
		if err := os.WriteFile(NotifyFile, []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
			return nil, err
		}
		b := make([]byte, 1<<14)
		for {
			k, err := unix.Read(fd, b)
			if errors.Is(err, unix.EAGAIN) {
				if err := waitReadable(fd); err != nil {
					return nil, fmt.Errorf("no event for the write to %s: %w", NotifyFile, err)
				}
				continue
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read the events: %w", err)
			}
			ok, err := written(b[:k])
			if err != nil || ok {
				return nil, err
			}
		}
	})
}

func runInotify(ctx context.Context, s *State, _ []string) error {
	if err := os.MkdirAll(NotifyDir, 0o755); err != nil {
		return err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify_init1: %w", err)
	}
	wd, err := unix.InotifyAddWatch(fd, NotifyDir, unix.IN_CLOSE_WRITE|unix.IN_CREATE)
	if err != nil {
		return fmt.Errorf("watch %s: %w", NotifyDir, err)
	}
	name := filepath.Base(NotifyFile)
	return notifyBeats(ctx, s, fd, []string{"inotify_wd", strconv.Itoa(wd)}, func(b []byte) (bool, error) {
		found := false
		for len(b) >= unix.SizeofInotifyEvent {
			ewd := int32(binary.NativeEndian.Uint32(b[0:]))
			mask := binary.NativeEndian.Uint32(b[4:])
			size := int(binary.NativeEndian.Uint32(b[12:]))
			if len(b) < unix.SizeofInotifyEvent+size {
				return false, fmt.Errorf("a truncated inotify event")
			}
			ename := strings.TrimRight(string(b[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+size]), "\x00")
			if mask&unix.IN_Q_OVERFLOW != 0 || mask&unix.IN_IGNORED != 0 {
				return false, fmt.Errorf("inotify event mask %#x: the watch is gone or the queue overflowed", mask)
			}
			if int(ewd) != wd {
				return false, fmt.Errorf("an event of watch %d, want %d", ewd, wd)
			}
			found = found || (mask&unix.IN_CLOSE_WRITE != 0 && ename == name)
			b = b[unix.SizeofInotifyEvent+size:]
		}
		return found, nil
	})
}

// fanotify event metadata: its size and the offsets of event_len and
// mask (struct fanotify_event_metadata).
const (
	fanMetadataSize = 24
	fanMetaMask     = 8
)

func runFanotify(ctx context.Context, s *State, _ []string) error {
	if err := os.MkdirAll(NotifyDir, 0o755); err != nil {
		return err
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_REPORT_FID, unix.O_RDONLY|unix.O_CLOEXEC)
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("fanotify_init(FAN_CLASS_NOTIF|FAN_REPORT_FID): %w: the container has no CAP_SYS_ADMIN, and this kernel lets no process without it make a fanotify group (Linux 5.13 and later allow one that reports file handles)", err)
	}
	if err != nil {
		return fmt.Errorf("fanotify_init: %w", err)
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_CLOSE_WRITE|unix.FAN_EVENT_ON_CHILD, unix.AT_FDCWD, NotifyDir); err != nil {
		return fmt.Errorf("fanotify_mark %s: %w", NotifyDir, err)
	}
	return notifyBeats(ctx, s, fd, []string{"fanotify_flags", "FAN_CLASS_NOTIF|FAN_REPORT_FID"}, func(b []byte) (bool, error) {
		found := false
		for len(b) >= fanMetadataSize {
			size := int(binary.NativeEndian.Uint32(b[0:]))
			mask := binary.NativeEndian.Uint64(b[fanMetaMask:])
			if size < fanMetadataSize || size > len(b) {
				return false, fmt.Errorf("a fanotify event of %d bytes in %d", size, len(b))
			}
			if mask&unix.FAN_Q_OVERFLOW != 0 {
				return false, errors.New("the fanotify queue overflowed")
			}
			found = found || mask&unix.FAN_CLOSE_WRITE != 0
			b = b[size:]
		}
		return found, nil
	})
}

// verifyNotify checks that the restored process still reads the events
// of its writes and that its instance still holds its watch (an fdinfo
// line starting with prefix).
func verifyNotify(prefix, what string) Verifier {
	return func(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
		now, err := countPast(ctx, p, before, KeyNotifyEvents)
		if err != nil {
			return "", err
		}
		data, err := os.ReadFile(filepath.Join(procRoot(p), strconv.Itoa(p.PID), "fdinfo", before[KeyNotifyFD]))
		if err != nil {
			return "", fmt.Errorf("read the restored instance's fdinfo: %w", err)
		}
		if n := strings.Count(string(data), prefix); n != 1 {
			return "", fmt.Errorf("the restored instance (fd %s) holds %d %s(s), want 1", before[KeyNotifyFD], n, what)
		}
		return fmt.Sprintf("its %s on %s still reports the writes there: %s reported by the dump, %s by now", what, NotifyDir, before[KeyNotifyEvents], now[KeyNotifyEvents]), nil
	}
}
