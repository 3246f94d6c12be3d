package checks

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procWatch is what an inotify watch's file handle leads to, found the
// way CRIU looks for the path it saves with the watch: open the handle on
// a mount of the watched filesystem, read the path of what opened.
type procWatch struct {
	// Path is the watched file's path as the kernel shows it, " (deleted)"
	// when its name was removed; Nlink its link count.
	Path  string
	Nlink uint64
	Dev   uint64
	Ino   uint64
	// FSType is the type of the mount the handle was opened on.
	FSType string
}

// Removed reports whether the watched file's name is gone.
func (w procWatch) Removed() bool { return strings.HasSuffix(w.Path, " (deleted)") }

// procParseHandle reads the file handle of an inotify or fanotify fdinfo
// line: "fhandle-bytes:8 fhandle-type:1 f_handle:a7010000e8cb3e1b".
func procParseHandle(line string) (unix.FileHandle, error) {
	n, err1 := strconv.ParseUint(procField(line, "fhandle-bytes"), 16, 32)
	typ, err2 := strconv.ParseInt(procField(line, "fhandle-type"), 16, 32)
	b, err3 := hex.DecodeString(procField(line, "f_handle"))
	if err := errors.Join(err1, err2, err3); err != nil {
		return unix.FileHandle{}, fmt.Errorf("parse the file handle of %q: %w", line, err)
	}
	if uint64(len(b)) != n {
		return unix.FileHandle{}, fmt.Errorf("parse the file handle of %q: %d bytes, fhandle-bytes says %d", line, len(b), n)
	}
	return unix.NewFileHandle(int32(typ), b), nil
}

// procOpenWatch opens the watch of line (a fdinfo line of process pid,
// whose mounts are ids) by its handle, O_PATH, on a directory mount of the
// watched device, and reports what it found. Opening by handle needs
// CAP_DAC_READ_SEARCH, which CRIU needs as well.
func procOpenWatch(t *procTree, pid int, ids map[int]procMount, line string) (procWatch, error) {
	h, err := procParseHandle(line)
	if err != nil {
		return procWatch{}, err
	}
	mm := procSDevMajMin(procField(line, "sdev"))
	var tried []string
	for _, m := range ids {
		if m.MajMin != mm {
			continue
		}
		mp := filepath.Join(t.fs.Path(pid, "root"), filepath.Clean("/"+m.MountPoint))
		// open_by_handle_at refuses an O_PATH mount fd.
		mfd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", m.MountPoint, err))
			continue
		}
		fd, err := unix.OpenByHandleAt(mfd, h, unix.O_PATH|unix.O_CLOEXEC)
		unix.Close(mfd)
		if err != nil {
			tried = append(tried, fmt.Sprintf("open by handle on %s: %v", m.MountPoint, err))
			continue
		}
		w, err := procWatchOf(fd, m.FSType)
		unix.Close(fd)
		return w, err
	}
	if len(tried) == 0 {
		return procWatch{}, fmt.Errorf("no mount of device %s in the process's mount namespace", mm)
	}
	return procWatch{}, errors.New(strings.Join(tried, "; "))
}

func procWatchOf(fd int, fstype string) (procWatch, error) {
	path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return procWatch{}, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return procWatch{}, err
	}
	return procWatch{Path: path, Nlink: uint64(st.Nlink), Dev: st.Dev, Ino: st.Ino, FSType: fstype}, nil
}
