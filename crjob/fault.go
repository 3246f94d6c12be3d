package crjob

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// injectFault starts the fault the job asks for (kata-cr's fault tests)
// and returns the function that stops it; without one it does nothing.
// FaultKillCRIU waits for a criu process to appear and kills it a moment
// later, in the middle of its dump, and records that in the report.
func (j *cpJob) injectFault(ctx context.Context) (stop func()) {
	if j.opts.Fault != agentapi.FaultKillCRIU {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	var killed int
	var seen []string
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			// A criu that is gone (or a zombie) 100 ms after it appeared
			// was a short query (its version, a feature), not the dump:
			// look for the next one.
			if pid := findCRIU(); pid > 0 {
				time.Sleep(100 * time.Millisecond)
				if running(pid) && syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed = pid
					return
				}
				if len(seen) < 8 {
					seen = append(seen, fmt.Sprintf("pid %d had ended 100 ms after it was seen", pid))
				}
				continue
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		f := reports.Finding{ID: "checkpoint.fault", Category: "checkpoint", Level: reports.Optional, Status: reports.Warn,
			Summary: fmt.Sprintf("fault injected: criu (pid %d) was killed during the dump", killed)}
		if killed == 0 {
			f.Summary = "fault injected: no criu process was found to kill during the dump"
			f.Evidence = seen
		}
		j.r.Findings = append(j.r.Findings, f)
	}
}

// running reports whether process pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the command's closing parenthesis.
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// findCRIU returns the pid of a running criu process, 0 when none runs:
// one whose command line runs a program named criu (directly, or through
// the dynamic loader that a CRIU from another suite is started with), or
// one CRIU retitled while it serves an RPC request (swrk rewrites its
// command line into one string, "dump --rpc -t PID -D DIR", once the
// request arrives).
func findCRIU() int {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 {
			args = args[:2]
		}
		rpc := strings.Contains(args[0], " --rpc ")
		if !rpc && !slices.ContainsFunc(args, func(a string) bool { return filepath.Base(a) == "criu" }) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			return pid
		}
	}
	return 0
}
