package testload

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ModeThreads runs threads (its word: how many, 8 without) locked to OS
// threads of their own, each counting in memory.
const ModeThreads = "threads"

// defaultThreads is how many counting threads the threads mode starts.
const defaultThreads = 8

func init() {
	Register(Mode{Name: ModeThreads, Description: "N OS threads (word: N, 8 without), each counting in memory", Run: runThreads})
	var keys stateKeys
	for i := range defaultThreads {
		keys.same = append(keys.same, threadKey(i, "tid"))
		keys.moved = append(keys.moved, threadKey(i, "count"))
	}
	keys.same = append(keys.same, "threads_alive")
	registerWorkload(NewWorkload("threads", fmt.Sprintf("%d OS threads, each counting in memory (%s %s)", defaultThreads, Name, ModeThreads),
		ModeThreads, nil, carriedKeys(ModeThreads, keys)))
}

func threadKey(i int, what string) string {
	return "thread" + strconv.Itoa(i) + "_" + what
}

// countingThread is one thread of the threads mode: its tid and count.
type countingThread struct {
	tid   atomic.Int64
	count atomic.Int64
}

func runThreads(ctx context.Context, s *State, args []string) error {
	n := defaultThreads
	if len(args) > 0 {
		var err error
		if n, err = strconv.Atoi(args[0]); err != nil || n < 1 {
			return fmt.Errorf("threads %q: want a positive number", args[0])
		}
	}
	threads := make([]countingThread, n)
	for i := range threads {
		go func(t *countingThread) {
			// Never unlocked: the goroutine keeps its thread for good.
			runtime.LockOSThread()
			t.tid.Store(int64(unix.Gettid()))
			for {
				t.count.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		}(&threads[i])
	}
	if err := waitThreads(ctx, threads); err != nil {
		return err
	}
	return readyAndBeat(ctx, s, func() ([]string, error) {
		var kv []string
		alive := 0
		for i := range threads {
			tid := strconv.FormatInt(threads[i].tid.Load(), 10)
			if _, err := os.Stat("/proc/self/task/" + tid); err == nil {
				alive++
			}
			kv = append(kv, threadKey(i, "tid"), tid, threadKey(i, "count"), strconv.FormatInt(threads[i].count.Load(), 10))
		}
		return append(kv, "threads_alive", strconv.Itoa(alive)), nil
	})
}

// waitThreads waits until every counting thread has its tid.
func waitThreads(ctx context.Context, threads []countingThread) error {
	for {
		started := 0
		for i := range threads {
			if threads[i].tid.Load() != 0 {
				started++
			}
		}
		if started == len(threads) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d threads to start (%d did): %w", len(threads), started, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
