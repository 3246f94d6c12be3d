package testload

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/kata-cr/kata-cr/runtime/container"
)

// Modes, workloads and state keys of the file scenarios.
const (
	// ModeInotifyRemoved watches a file with inotify and removes the
	// watched name. Its words: "fd" keeps the file open, "link" keeps a
	// hard link to it under another name, so that the watch survives.
	ModeInotifyRemoved = "inotify-removed"
	// WatchedFile is the watched file (a container path).
	WatchedFile = "/run/kata-cr-watched"
	// KeyWatches is how many watches the inotify instance holds.
	KeyWatches = "inotify_watches"

	// ModeGhost holds a deleted file open. Its words: the size in bytes,
	// and "sparse" for a file that is a hole but for its first block.
	ModeGhost = "ghost"
	// GhostFile is the deleted file's name before it was deleted.
	GhostFile = "/run/kata-cr-ghost"
	// Keys of the ghost file: the fd holding it, its size, the bytes it
	// occupies and the sha256 of its content.
	KeyGhostFD     = "ghost_fd"
	KeyGhostSize   = "ghost_size"
	KeyGhostBytes  = "ghost_allocated"
	KeyGhostSHA256 = "ghost_sha256"

	// ModeFIFO makes a FIFO and a device node in the container's files
	// and holds both open, with data waiting in the FIFO.
	ModeFIFO = "fifo"
	// FIFOFile and DeviceFile are where they are made (container paths).
	FIFOFile   = "/run/kata-cr.fifo"
	DeviceFile = "/run/kata-cr-null"
	// FIFOData is what waits in the FIFO.
	FIFOData = "data in the fifo\n"
)

// ghostSparseData is how much of a sparse ghost file holds data.
const ghostSparseData = 4096

func init() {
	Register(Mode{Name: ModeInotifyRemoved, Description: "an inotify watch on " + WatchedFile + ", whose name is then removed (words: fd, link)", Run: readyAfter(setupInotifyRemoved)})
	Register(Mode{Name: ModeGhost, Description: "holds a deleted file of SIZE bytes open (words: SIZE [sparse])", Run: readyAfter(setupGhost)})
	Register(Mode{Name: ModeFIFO, Description: "holds a FIFO and a device node it made in its files open, with data in the FIFO", Run: readyAfter(func([]string) ([]string, error) { return setupFIFO() })})
	container.Register(NewWorkload("inotify-removed", "an inotify watch on a file whose name was removed, the file open and linked under another name ("+Name+" "+ModeInotifyRemoved+" fd link)",
		ModeInotifyRemoved, []string{"fd", "link"}, verifyInotify))
	container.Register(NewWorkload("ghost-large", "a deleted 2 MiB file held open, over CRIU's default ghost limit ("+Name+" "+ModeGhost+" 2097152)",
		ModeGhost, []string{"2097152"}, verifyGhost))
	container.Register(NewWorkload("ghost-small", "a deleted 64 KiB file held open, below CRIU's default ghost limit ("+Name+" "+ModeGhost+" 65536)", ModeGhost, []string{"65536"}, verifyGhost))
	container.Register(NewWorkload("ghost-sparse", "a deleted sparse 8 MiB file held open, 4 KiB of it data ("+Name+" "+ModeGhost+" 8388608 sparse)",
		ModeGhost, []string{"8388608", "sparse"}, verifyGhost))
	container.Register(NewWorkload("fifo", "a FIFO with data in it and a device node, made in the container's files and held open ("+Name+" "+ModeFIFO+")",
		ModeFIFO, nil, verifyFIFO))
	Register(Mode{Name: ModeFiles, Description: "the fifo, ghost (2 MiB) and inotify-removed (fd link) scenarios in one process", Run: readyAfter(setupFiles)})
	container.Register(NewWorkload("files", "a FIFO and a device node, a deleted 2 MiB file and an inotify watch on a removed file linked elsewhere, in one process ("+Name+" "+ModeFiles+")",
		ModeFiles, nil, verifyFiles))
}

// ModeFiles sets up the fifo, a 2 MiB ghost and inotify-removed (fd link)
// in one process, so that one checkpoint tries all of them.
const ModeFiles = "files"

// setupFiles sets up the scenarios of ModeFiles and returns their state.
func setupFiles([]string) ([]string, error) {
	var kv []string
	for _, setup := range []func() ([]string, error){
		setupFIFO,
		func() ([]string, error) { return setupGhost([]string{"2097152"}) },
		func() ([]string, error) { return setupInotifyRemoved([]string{"fd", "link"}) },
	} {
		more, err := setup()
		if err != nil {
			return nil, err
		}
		kv = append(kv, more...)
	}
	return kv, nil
}

// readyAfter is the Run of a mode whose scenario setup makes: it records
// the state setup returns, marks the mode ready and holds.
func readyAfter(setup func(args []string) ([]string, error)) func(context.Context, *State, []string) error {
	return func(ctx context.Context, s *State, args []string) error {
		kv, err := setup(args)
		if err != nil {
			return err
		}
		if err := s.Ready(kv...); err != nil {
			return err
		}
		return Hold(ctx)
	}
}

// verifyFiles runs the verifications of the scenarios of ModeFiles.
func verifyFiles(ctx context.Context, p container.Probe, before, now container.State) (string, error) {
	var msgs []string
	for _, v := range []Verifier{verifyFIFO, verifyGhost, verifyInotify} {
		m, err := v(ctx, p, before, now)
		if err != nil {
			return "", err
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; "), nil
}

// setupInotifyRemoved makes WatchedFile, watches it, removes its name and
// returns the state to record. The files it opens stay open.
func setupInotifyRemoved(args []string) ([]string, error) {
	for _, a := range args {
		if a != "fd" && a != "link" {
			return nil, fmt.Errorf("unknown word %q: want fd or link", a)
		}
	}
	if err := os.WriteFile(WatchedFile, []byte("watched\n"), 0o644); err != nil {
		return nil, err
	}
	if slices.Contains(args, "fd") {
		fd, err := unix.Open(WatchedFile, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", WatchedFile, err)
		}
		_ = fd // held until the process ends
	}
	if slices.Contains(args, "link") {
		_ = os.Remove(WatchedFile + ".link")
		if err := os.Link(WatchedFile, WatchedFile+".link"); err != nil {
			return nil, err
		}
	}
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	if _, err := unix.InotifyAddWatch(ifd, WatchedFile, unix.IN_MODIFY|unix.IN_ATTRIB|unix.IN_CLOSE_WRITE); err != nil {
		return nil, fmt.Errorf("watch %s: %w", WatchedFile, err)
	}
	if err := os.Remove(WatchedFile); err != nil {
		return nil, err
	}
	n, err := inotifyWatches("/proc/self/fdinfo/" + strconv.Itoa(ifd))
	if err != nil {
		return nil, err
	}
	return []string{"inotify_fd", strconv.Itoa(ifd), KeyWatches, strconv.Itoa(n)}, nil
}

// inotifyWatches counts the watches in an inotify fd's fdinfo.
func inotifyWatches(fdinfo string) (int, error) {
	data, err := os.ReadFile(fdinfo)
	if err != nil {
		return 0, err
	}
	return strings.Count(string(data), "inotify wd:"), nil
}

// verifyInotify checks that the restored process still watches as many
// files as at the dump.
func verifyInotify(_ context.Context, p container.Probe, before, _ container.State) (string, error) {
	fdinfo := filepath.Join(procRoot(p), strconv.Itoa(p.PID), "fdinfo", before["inotify_fd"])
	n, err := inotifyWatches(fdinfo)
	if err != nil {
		return "", fmt.Errorf("read the restored inotify instance: %w", err)
	}
	if strconv.Itoa(n) != before[KeyWatches] {
		return "", fmt.Errorf("the restored inotify instance holds %d watches, %s at the dump", n, before[KeyWatches])
	}
	return fmt.Sprintf("its inotify instance still holds %d watch(es)", n), nil
}

// setupGhost makes GhostFile of the size args give, holds it open, deletes
// it and returns the state to record.
func setupGhost(args []string) ([]string, error) {
	if len(args) == 0 || len(args) > 2 || (len(args) == 2 && args[1] != "sparse") {
		return nil, errors.New("want SIZE [sparse]")
	}
	size, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || size < ghostSparseData {
		return nil, fmt.Errorf("size %q: want a number of bytes of at least %d", args[0], ghostSparseData)
	}
	// Held until the process ends: a raw fd, which no finalizer closes.
	fd, err := unix.Open(GhostFile, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", GhostFile, err)
	}
	data := size
	if len(args) == 2 {
		data = ghostSparseData
		if err := unix.Ftruncate(fd, size); err != nil {
			return nil, err
		}
	}
	if _, err := io.CopyN(rawFD(fd), rand.Reader, data); err != nil {
		return nil, fmt.Errorf("write %s: %w", GhostFile, err)
	}
	if err := unix.Fsync(fd); err != nil {
		return nil, err
	}
	if err := os.Remove(GhostFile); err != nil {
		return nil, err
	}
	sum, st, err := fileDigest(fd)
	if err != nil {
		return nil, err
	}
	return []string{KeyGhostFD, strconv.Itoa(fd), KeyGhostSize, strconv.FormatInt(st.Size, 10),
		KeyGhostBytes, strconv.FormatInt(st.Blocks*512, 10), KeyGhostSHA256, sum}, nil
}

// rawFD reads and writes a file descriptor it does not own.
type rawFD int

func (fd rawFD) Write(b []byte) (int, error) { return unix.Write(int(fd), b) }

func (fd rawFD) ReadAt(b []byte, off int64) (int, error) {
	n, err := unix.Pread(int(fd), b, off)
	if err == nil && n < len(b) {
		err = io.EOF
	}
	return max(n, 0), err
}

// fileDigest hashes an open file's content from its start.
func fileDigest(fd int) (string, unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return "", st, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(rawFD(fd), 0, st.Size)); err != nil {
		return "", st, err
	}
	return hex.EncodeToString(h.Sum(nil)), st, nil
}

// verifyGhost checks that the restored process holds the deleted file with
// the content it had at the dump.
func verifyGhost(_ context.Context, p container.Probe, before, _ container.State) (string, error) {
	link := filepath.Join(procRoot(p), strconv.Itoa(p.PID), "fd", before[KeyGhostFD])
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("the restored process has no fd %s: %w", before[KeyGhostFD], err)
	}
	if !strings.HasSuffix(target, " (deleted)") {
		return "", fmt.Errorf("the restored fd %s is %s, not a deleted file", before[KeyGhostFD], target)
	}
	f, err := os.Open(link)
	if err != nil {
		return "", fmt.Errorf("open the restored ghost file: %w", err)
	}
	defer f.Close()
	sum, st, err := fileDigest(int(f.Fd()))
	if err != nil {
		return "", fmt.Errorf("read the restored ghost file: %w", err)
	}
	if strconv.FormatInt(st.Size, 10) != before[KeyGhostSize] || sum != before[KeyGhostSHA256] {
		return "", fmt.Errorf("the restored ghost file has %d bytes (sha256 %s), at the dump %s (sha256 %s)", st.Size, sum, before[KeyGhostSize], before[KeyGhostSHA256])
	}
	return fmt.Sprintf("its deleted file (%d bytes) came back with the same content", st.Size), nil
}

// setupFIFO makes FIFOFile and DeviceFile, holds both open with FIFOData
// waiting in the FIFO, and returns the state to record.
func setupFIFO() ([]string, error) {
	_ = os.Remove(FIFOFile)
	_ = os.Remove(DeviceFile)
	if err := unix.Mkfifo(FIFOFile, 0o600); err != nil {
		return nil, fmt.Errorf("mkfifo %s: %w", FIFOFile, err)
	}
	// Open for reading and writing, a FIFO opens at once and keeps the
	// data written to it.
	fifo, err := unix.Open(FIFOFile, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", FIFOFile, err)
	}
	if _, err := unix.Write(fifo, []byte(FIFOData)); err != nil {
		return nil, fmt.Errorf("write to %s: %w", FIFOFile, err)
	}
	if err := unix.Mknod(DeviceFile, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		return nil, fmt.Errorf("mknod %s: %w", DeviceFile, err)
	}
	dev, err := unix.Open(DeviceFile, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", DeviceFile, err)
	}
	return []string{"fifo_fd", strconv.Itoa(fifo), "device_fd", strconv.Itoa(dev)}, nil
}

// verifyFIFO checks that the FIFO and the device node are in the restored
// container's files and that the FIFO still holds its data.
func verifyFIFO(_ context.Context, p container.Probe, _, _ container.State) (string, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p.Path(DeviceFile), &st); err != nil {
		return "", fmt.Errorf("the restored container has no %s: %w", DeviceFile, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
		return "", fmt.Errorf("the restored %s is not the character device 1:3 (mode %o, rdev %#x)", DeviceFile, st.Mode, st.Rdev)
	}
	fd, err := unix.Open(p.Path(FIFOFile), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open the restored %s: %w", FIFOFile, err)
	}
	defer unix.Close(fd)
	buf := make([]byte, 256)
	n, err := unix.Read(fd, buf)
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return "", fmt.Errorf("read the restored %s: %w", FIFOFile, err)
	}
	if got := string(buf[:max(n, 0)]); got != FIFOData {
		return "", fmt.Errorf("the restored %s holds %q, at the dump %q", FIFOFile, got, FIFOData)
	}
	return fmt.Sprintf("%s came back with its data, %s as the device 1:3", FIFOFile, DeviceFile), nil
}
