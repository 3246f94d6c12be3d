package container

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// OutputFile is where a container init without a terminal writes its
// stdout and stderr: a file on the container's own /dev tmpfs, so that it
// is a file inside the container as CRIU needs every file of the tree to
// be (CRIU saves it with the tmpfs and opens it again on restore). The
// launcher holds a reader of it, so the output of an init that dies at
// once can still be read after its mount namespace is gone.
const OutputFile = "/dev/.kata-cr-output"

// outputTailBytes bounds how much of the output OutputTail reads.
const outputTailBytes = 8 << 10

// openOutput opens OutputFile for the init's stdout and stderr and sends
// a reader of it to the launcher. It returns -1 when the container's /dev
// does not take the file: stdout and stderr then stay on /dev/null.
func openOutput(sock int) int {
	w, err := unix.Open(OutputFile, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_APPEND|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1
	}
	r, err := unix.Open(OutputFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(w)
		return -1
	}
	msg, _ := json.Marshal(initReply{Output: true})
	err = unix.Sendmsg(sock, msg, unix.UnixRights(r), nil, 0)
	unix.Close(r)
	if err != nil {
		unix.Close(w)
		return -1
	}
	return w
}

// redirectOutput points fds 1 and 2 at the container's OutputFile when
// it can be made.
func redirectOutput(sock int) error {
	w := openOutput(sock)
	if w < 0 {
		return nil
	}
	defer unix.Close(w)
	for _, fd := range []int{1, 2} {
		if err := unix.Dup2(w, fd); err != nil {
			return fmt.Errorf("set up fd %d: %w", fd, err)
		}
	}
	return nil
}

// outputFrom takes the output reader out of a reply's control message.
func outputFrom(oob []byte) (*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("receive the init's output: bad control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("receive the init's output: no file descriptor")
	}
	return os.NewFile(uintptr(fds[0]), "container-output"), nil
}

// OutputTail returns the last lines (at most n) that the container init
// wrote to its stdout and stderr, or nil when they were not captured (a
// terminal container, an adopted one).
func (c *Container) OutputTail(n int) []string {
	c.mu.Lock()
	f := c.output
	c.mu.Unlock()
	if f == nil || n <= 0 {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return nil
	}
	off := max(0, st.Size()-outputTailBytes)
	buf := make([]byte, st.Size()-off)
	k, _ := f.ReadAt(buf, off)
	text := string(buf[:k])
	if off > 0 {
		// Drop the line the window starts in the middle of.
		if _, rest, ok := strings.Cut(text, "\n"); ok {
			text = rest
		}
	}
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func (c *Container) closeOutput() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.output != nil {
		c.output.Close()
		c.output = nil
	}
}
