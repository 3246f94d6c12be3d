package kbuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// lockTree takes the lock of a source/object tree: one build at a time
// uses it (make in one object tree twice at once corrupts it). It waits
// for another build to finish, telling progress so.
func lockTree(ctx context.Context, tree string, progress func(string)) (func(), error) {
	f, err := os.OpenFile(tree+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock kernel build tree: %w", err)
	}
	told := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock kernel build tree: %w", err)
		}
		if !told {
			progress(fmt.Sprintf("waiting for another kata-cr kernel build using %s", tree))
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
