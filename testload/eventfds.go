package testload

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes and state keys of the event file scenarios: each holds one kind of
// event file and uses it every beat.
const (
	// ModeEpoll watches a pipe and an eventfd with an epoll instance;
	// every beat it writes to both and handles the events epoll reports.
	ModeEpoll = "epoll"
	// KeyEpollRounds counts the beats whose events were all handled.
	KeyEpollRounds = "epoll_rounds"

	// ModeEventfd holds an eventfd whose counter it adds 1 to every beat,
	// never reading it: the counter is the scenario's state.
	ModeEventfd = "eventfd"
	// KeyEventfdFD is the eventfd's descriptor, KeyEventfdCount its
	// counter as the process last read it from its fdinfo.
	KeyEventfdFD    = "eventfd_fd"
	KeyEventfdCount = "eventfd_count"
	// eventfdStart is the counter the eventfd is made with.
	eventfdStart = 1000

	// ModeSignalfd blocks SIGUSR1 on one thread, reads it from a signalfd
	// and keeps one SIGUSR1 queued to that thread at all times: every beat
	// it reads the queued one (whose value is the previous beat's number)
	// and queues the next.
	ModeSignalfd = "signalfd"
	// KeySignals counts the signals read with the value expected.
	KeySignals = "signals"

	// ModeTimerfd arms a periodic timerfd and reads its expirations every
	// beat.
	ModeTimerfd = "timerfd"
	// KeyTimerfdFD is the timerfd's descriptor, KeyExpirations the
	// expirations read so far.
	KeyTimerfdFD   = "timerfd_fd"
	KeyExpirations = "timerfd_expirations"
	// timerfdInterval is the timer's period.
	timerfdInterval = 50 * time.Millisecond

	// KeyBeatError is the last failed use of a scenario's object.
	KeyBeatError = "beat_error"
)

// stepTimeout bounds the wait for an event a beat caused.
const stepTimeout = 2 * time.Second

func init() {
	Register(Mode{Name: ModeEpoll, Description: "an epoll instance watching a pipe and an eventfd, events handled every beat", Run: runEpoll})
	Register(Mode{Name: ModeEventfd, Description: "an eventfd whose counter grows by 1 every beat", Run: runEventfd})
	Register(Mode{Name: ModeSignalfd, Description: "a signalfd for SIGUSR1 (blocked), one signal queued at all times, read and queued again every beat", Run: runSignalfd})
	Register(Mode{Name: ModeTimerfd, Description: "a periodic timerfd whose expirations are read every beat", Run: runTimerfd})
	registerWorkload(NewWorkload("epoll", "an epoll instance watching a pipe and an eventfd, handling their events every beat ("+Name+" "+ModeEpoll+")",
		ModeEpoll, nil, verifyBeats(KeyEpollRounds, "rounds of epoll events handled")))
	registerWorkload(NewWorkload("eventfd", "an eventfd whose counter grows by 1 every beat ("+Name+" "+ModeEventfd+")",
		ModeEventfd, nil, verifyEventfd))
	registerWorkload(NewWorkload("signalfd", "a signalfd for a blocked SIGUSR1 with a signal always queued ("+Name+" "+ModeSignalfd+")",
		ModeSignalfd, nil, verifyBeats(KeySignals, "queued SIGUSR1 signals read from the signalfd with the value sent")))
	registerWorkload(NewWorkload("timerfd", "a periodic timerfd read every beat ("+Name+" "+ModeTimerfd+")",
		ModeTimerfd, nil, verifyTimerfd))
}

// beats uses a scenario's object every beat, once it is ready: step(n)
// uses it for the nth time and returns state to record. A step that
// succeeds records its state and n under countKey; one that fails records
// why under KeyBeatError and is tried again with the same n next beat.
func beats(ctx context.Context, s *State, countKey string, step func(n int) ([]string, error)) error {
	t := time.NewTicker(beatInterval)
	defer t.Stop()
	for n := 1; ; {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		kv, err := step(n)
		if err != nil {
			if err := s.Set(KeyBeatError, fmt.Sprintf("use %d: %v", n, err)); err != nil {
				return err
			}
			continue
		}
		if err := s.Set(append(kv, countKey, strconv.Itoa(n))...); err != nil {
			return err
		}
		n++
	}
}

// verifyBeats is the Verifier of a scenario run by beats: the restored
// process uses its object successfully more times than at the dump
// (countKey moves past the dumped value), and no use fails.
func verifyBeats(countKey, what string) Verifier {
	return func(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
		now, err := countPast(ctx, p, before, countKey)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %s at the dump, %s after the restore", what, before[countKey], now[countKey]), nil
	}
}

// countPast waits until the restored process's state has countKey past
// its value at the dump, and fails when the process records a failed use
// of its object (KeyBeatError) it had not at the dump.
func countPast(ctx context.Context, p container.Probe, before container.State, countKey string) (container.State, error) {
	return countPastWith(ctx, p, before, countKey, KeyBeatError)
}

// countPastWith is countPast with the failures recorded under errKey.
func countPastWith(ctx context.Context, p container.Probe, before container.State, countKey, errKey string) (container.State, error) {
	dumped, err := strconv.Atoi(before[countKey])
	if err != nil {
		return nil, fmt.Errorf("the snapshot has no %s (%q)", countKey, before[countKey])
	}
	var now container.State
	err = p.Poll(ctx, fmt.Sprintf("wait for %s to pass %d", countKey, dumped), func() error {
		st, err := ReadState(p)
		if err != nil {
			return container.NotYet("%v", err)
		}
		if e := st[errKey]; e != "" && e != before[errKey] {
			return fmt.Errorf("the restored process failed: %s", e)
		}
		if n, _ := strconv.Atoi(st[countKey]); n <= dumped {
			return container.NotYet("%s at %d", countKey, n)
		}
		now = st
		return nil
	})
	return now, err
}

// fdinfoField returns the value of key (as "key:" starts its line) in the
// fdinfo of descriptor fd of process pid under procRoot.
func fdinfoField(procRoot string, pid int, fd, key string) (string, error) {
	data, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "fdinfo", fd))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no %s in the fdinfo of fd %s of process %d", key, fd, pid)
}

// waitReadable waits until fd is readable, for at most stepTimeout.
func waitReadable(fd int) error {
	deadline := time.Now().Add(stepTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("nothing to read within %s", stepTimeout)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// writeUint64 writes v as an eventfd takes it.
func writeUint64(fd int, v uint64) error {
	b := binary.NativeEndian.AppendUint64(nil, v)
	_, err := unix.Write(fd, b)
	return err
}

// readUint64 reads the 8-byte counter an eventfd or a timerfd gives.
func readUint64(fd int) (uint64, error) {
	b := make([]byte, 8)
	n, err := unix.Read(fd, b)
	if err != nil {
		return 0, err
	}
	if n != 8 {
		return 0, fmt.Errorf("read %d bytes, want 8", n)
	}
	return binary.NativeEndian.Uint64(b), nil
}

func runEpoll(ctx context.Context, s *State, _ []string) error {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	for _, fd := range []int{p[0], efd} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fmt.Errorf("epoll_ctl add %d: %w", fd, err)
		}
	}
	if err := s.Ready("epoll_fd", strconv.Itoa(ep), KeyEpollRounds, "0"); err != nil {
		return err
	}
	return beats(ctx, s, KeyEpollRounds, func(n int) ([]string, error) {
		if _, err := unix.Write(p[1], []byte{byte(n)}); err != nil {
			return nil, fmt.Errorf("write the pipe: %w", err)
		}
		if err := writeUint64(efd, 1); err != nil {
			return nil, fmt.Errorf("write the eventfd: %w", err)
		}
		pending := map[int32]bool{int32(p[0]): true, int32(efd): true}
		deadline := time.Now().Add(stepTimeout)
		ev := make([]unix.EpollEvent, 4)
		for len(pending) > 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("epoll reported no event for %d descriptor(s) within %s", len(pending), stepTimeout)
			}
			k, err := unix.EpollWait(ep, ev, 100)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("epoll_wait: %w", err)
			}
			for _, e := range ev[:k] {
				if !pending[e.Fd] {
					return nil, fmt.Errorf("epoll reported fd %d, which has nothing new", e.Fd)
				}
				delete(pending, e.Fd)
				if e.Fd == int32(efd) {
					_, err = readUint64(efd)
				} else {
					var b [1]byte
					var got int
					got, err = unix.Read(p[0], b[:])
					if err == nil && (got != 1 || b[0] != byte(n)) {
						err = fmt.Errorf("the pipe gave %d byte(s) %v, want [%d]", got, b[:max(got, 0)], byte(n))
					}
				}
				if err != nil {
					return nil, fmt.Errorf("handle the event of fd %d: %w", e.Fd, err)
				}
			}
		}
		return nil, nil
	})
}

func runEventfd(ctx context.Context, s *State, _ []string) error {
	efd, err := unix.Eventfd(eventfdStart, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	fd := strconv.Itoa(efd)
	if err := s.Ready(KeyEventfdFD, fd, KeyEventfdCount, strconv.Itoa(eventfdStart), "eventfd_adds", "0"); err != nil {
		return err
	}
	return beats(ctx, s, "eventfd_adds", func(n int) ([]string, error) {
		if err := writeUint64(efd, 1); err != nil {
			return nil, fmt.Errorf("add 1 to the eventfd: %w", err)
		}
		v, err := eventfdCount("/proc", os.Getpid(), fd)
		if err != nil {
			return nil, err
		}
		if want := uint64(eventfdStart + n); v != want {
			return nil, fmt.Errorf("the eventfd counts %d after %d additions to %d, want %d", v, n, eventfdStart, want)
		}
		return []string{KeyEventfdCount, strconv.FormatUint(v, 10)}, nil
	})
}

// eventfdCount reads an eventfd's counter from its fdinfo.
func eventfdCount(procRoot string, pid int, fd string) (uint64, error) {
	v, err := fdinfoField(procRoot, pid, fd, "eventfd-count")
	if err != nil {
		return 0, fmt.Errorf("read the eventfd's counter: %w", err)
	}
	n, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("read the eventfd's counter %q: %w", v, err)
	}
	return n, nil
}

// verifyEventfd checks that the restored eventfd's counter went on from
// its value at the dump, as the process sees it and as its fdinfo says.
func verifyEventfd(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
	now, err := countPast(ctx, p, before, KeyEventfdCount)
	if err != nil {
		return "", err
	}
	v, err := eventfdCount(procRoot(p), p.PID, before[KeyEventfdFD])
	if err != nil {
		return "", err
	}
	if dumped, _ := strconv.ParseUint(before[KeyEventfdCount], 10, 64); v <= dumped {
		return "", fmt.Errorf("the restored eventfd counts %d, %d at the dump", v, dumped)
	}
	return fmt.Sprintf("its eventfd counted %s at the dump and went on to %s (fdinfo: %d)", before[KeyEventfdCount], now[KeyEventfdCount], v), nil
}

// siginfo offsets (x86_64 and other 64-bit Linux): si_signo, si_code and
// si_value in a siginfo_t; ssi_signo and ssi_int in a signalfd_siginfo.
const (
	siginfoSize      = 128
	siginfoCode      = 8
	siginfoValue     = 24
	siQueue          = -1 // SI_QUEUE
	signalfdInfoSize = 128
	signalfdInfoInt  = 44
)

// queueSignal queues sig with the value v to thread tid of this process
// (rt_tgsigqueueinfo), as sigqueue() does for a process.
func queueSignal(tid int, sig unix.Signal, v int32) error {
	info := make([]byte, siginfoSize)
	binary.NativeEndian.PutUint32(info[0:], uint32(sig))
	code := int32(siQueue)
	binary.NativeEndian.PutUint32(info[siginfoCode:], uint32(code))
	binary.NativeEndian.PutUint32(info[siginfoValue:], uint32(v))
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_TGSIGQUEUEINFO, uintptr(os.Getpid()), uintptr(tid), uintptr(sig), uintptr(unsafe.Pointer(&info[0])), 0, 0)
	if errno != 0 {
		return fmt.Errorf("rt_tgsigqueueinfo: %w", errno)
	}
	return nil
}

func runSignalfd(ctx context.Context, s *State, _ []string) error {
	// The signal is blocked, queued and read on this thread only: Go's
	// other threads take SIGUSR1 in the runtime's handler.
	runtime.LockOSThread()
	var set unix.Sigset_t
	sigAdd(&set, unix.SIGUSR1)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		return fmt.Errorf("block SIGUSR1: %w", err)
	}
	sfd, err := unix.Signalfd(-1, &set, unix.SFD_CLOEXEC|unix.SFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("signalfd: %w", err)
	}
	tid := unix.Gettid()
	if err := queueSignal(tid, unix.SIGUSR1, 0); err != nil {
		return err
	}
	if err := s.Ready("signalfd_fd", strconv.Itoa(sfd), "signal_tid", strconv.Itoa(tid), KeySignals, "0"); err != nil {
		return err
	}
	return beats(ctx, s, KeySignals, func(n int) ([]string, error) {
		b := make([]byte, signalfdInfoSize)
		k, err := unix.Read(sfd, b)
		if errors.Is(err, unix.EAGAIN) {
			return nil, fmt.Errorf("no SIGUSR1 queued: the one with value %d is gone", n-1)
		}
		if err != nil {
			return nil, fmt.Errorf("read the signalfd: %w", err)
		}
		if k != signalfdInfoSize {
			return nil, fmt.Errorf("read %d bytes from the signalfd, want %d", k, signalfdInfoSize)
		}
		sig := unix.Signal(binary.NativeEndian.Uint32(b))
		v := int32(binary.NativeEndian.Uint32(b[signalfdInfoInt:]))
		if sig != unix.SIGUSR1 || v != int32(n-1) {
			return nil, fmt.Errorf("read signal %d with value %d, want SIGUSR1 with value %d", sig, v, n-1)
		}
		return nil, queueSignal(tid, unix.SIGUSR1, int32(n))
	})
}

// sigAdd adds sig to set (sigaddset).
func sigAdd(set *unix.Sigset_t, sig unix.Signal) {
	bit := uint(sig) - 1
	set.Val[bit/64] |= 1 << (bit % 64)
}

func runTimerfd(ctx context.Context, s *State, _ []string) error {
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("timerfd_create: %w", err)
	}
	period := unix.NsecToTimespec(timerfdInterval.Nanoseconds())
	if err := unix.TimerfdSettime(tfd, 0, &unix.ItimerSpec{Interval: period, Value: period}, nil); err != nil {
		return fmt.Errorf("timerfd_settime: %w", err)
	}
	if err := s.Ready(KeyTimerfdFD, strconv.Itoa(tfd), KeyExpirations, "0", "timerfd_reads", "0"); err != nil {
		return err
	}
	var total uint64
	return beats(ctx, s, "timerfd_reads", func(int) ([]string, error) {
		v, err := readUint64(tfd)
		if errors.Is(err, unix.EAGAIN) {
			if err := waitReadable(tfd); err != nil {
				return nil, fmt.Errorf("the timer did not fire: %w", err)
			}
			v, err = readUint64(tfd)
		}
		if err != nil {
			return nil, fmt.Errorf("read the timerfd: %w", err)
		}
		total += v
		return []string{KeyExpirations, strconv.FormatUint(total, 10)}, nil
	})
}

// verifyTimerfd checks that the restored timer still fires and is still
// armed with its period.
func verifyTimerfd(ctx context.Context, p container.Probe, before, _ container.State) (string, error) {
	now, err := countPast(ctx, p, before, KeyExpirations)
	if err != nil {
		return "", err
	}
	iv, err := fdinfoField(procRoot(p), p.PID, before[KeyTimerfdFD], "it_interval")
	if err != nil {
		return "", fmt.Errorf("read the restored timerfd: %w", err)
	}
	if want := fmt.Sprintf("(0, %d)", timerfdInterval.Nanoseconds()); iv != want {
		return "", fmt.Errorf("the restored timerfd's interval is %s, want %s", iv, want)
	}
	return fmt.Sprintf("its timerfd (period %s) fired %s times by the dump, %s by now", timerfdInterval, before[KeyExpirations], now[KeyExpirations]), nil
}
