package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Syscall is /proc/PID/task/TID/syscall: the system call a task is blocked
// in, with its arguments.
type Syscall struct {
	// Running says the task was running, so nothing is known ("running").
	Running bool
	// Nr is the number of the system call, -1 when the task is blocked
	// outside one.
	Nr int
	// Args are its six arguments.
	Args [6]uint64
}

// ParseSyscall parses a syscall file: "running", "-1 SP PC", or
// "NR ARG1 ... ARG6 SP PC" with the arguments in hex.
func ParseSyscall(data []byte) (Syscall, error) {
	f := strings.Fields(string(data))
	switch {
	case len(f) == 1 && f[0] == "running":
		return Syscall{Running: true, Nr: -1}, nil
	case len(f) == 0:
		return Syscall{}, fmt.Errorf("parse syscall file: empty")
	}
	nr, err := strconv.Atoi(f[0])
	if err != nil {
		return Syscall{}, fmt.Errorf("parse syscall file %q: %w", data, err)
	}
	s := Syscall{Nr: nr}
	if nr < 0 {
		return s, nil
	}
	if len(f) < 7 {
		return Syscall{}, fmt.Errorf("parse syscall file %q: want the number and 6 arguments", data)
	}
	for i := range s.Args {
		v, err := strconv.ParseUint(strings.TrimPrefix(f[i+1], "0x"), 16, 64)
		if err != nil {
			return Syscall{}, fmt.Errorf("parse syscall file %q: argument %d: %w", data, i+1, err)
		}
		s.Args[i] = v
	}
	return s, nil
}

// ReadTaskSyscall reads /proc/PID/task/TID/syscall (root, or ptrace access
// to the task, may read it).
func (f FS) ReadTaskSyscall(pid, tid int) (Syscall, error) {
	return readFile(f.Path(pid, "task", strconv.Itoa(tid), "syscall"), ParseSyscall)
}

// ReadTaskWchan reads /proc/PID/task/TID/wchan: the kernel function a
// sleeping task waits in, "0" when it is not known.
func (f FS) ReadTaskWchan(pid, tid int) (string, error) {
	data, err := os.ReadFile(f.Path(pid, "task", strconv.Itoa(tid), "wchan"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// ReadTaskState reads the state letter of a task from
// /proc/PID/task/TID/stat (R, S, D, Z, T, t, ...).
func (f FS) ReadTaskState(pid, tid int) (string, error) {
	return readFile(f.Path(pid, "task", strconv.Itoa(tid), "stat"), ParseStatState)
}

// ParseStatState returns the state field of a stat file: the first field
// after the command name, which is in parentheses and may itself hold
// ") ".
func ParseStatState(data []byte) (string, error) {
	s := string(data)
	i := strings.LastIndex(s, ") ")
	if i < 0 {
		return "", fmt.Errorf("parse stat %q: no command name", data)
	}
	f := strings.Fields(s[i+2:])
	if len(f) == 0 {
		return "", fmt.Errorf("parse stat %q: no state", data)
	}
	return f[0], nil
}
