package gate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kata-cr/kata-cr/corpus"
)

// CellRunner runs the corpus of one cell: it builds (or takes from the
// cache) the cell's guest image and runs corpus.Run with the cell's
// entries, keeping the checkpoints in dir. An error is a failure of the
// cell's guests or of the host, not of a workload.
type CellRunner func(ctx context.Context, c Cell, dir string) (*corpus.Result, error)

// RunOptions say how to run a matrix.
type RunOptions struct {
	// Jobs is how many cells run at once (at least 1).
	Jobs int
	// FailFast stops the other cells once one did not pass: those not
	// started are skipped, those running are stopped.
	FailFast bool
	// Dir receives each cell's checkpoints, in Dir/CELL.
	Dir string
	// Done, when set, sees each cell as it finishes (from the goroutine
	// that ran it: one call at a time).
	Done func(CellResult)
}

// Run runs every cell of m, Jobs at a time. A cell that fails or cannot
// run does not stop the others (unless FailFast); cancelling ctx stops
// them all, and the cells not finished are reported skipped or as errors.
// The results are in the matrix's order.
func Run(ctx context.Context, m *Matrix, run CellRunner, o RunOptions) []CellResult {
	jobs := max(o.Jobs, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]CellResult, len(m.Cells))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, jobs)
		stop bool
	)
	for i, c := range m.Cells {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		mu.Lock()
		failedFast := stop
		mu.Unlock()
		switch {
		case failedFast:
			out[i] = failedCell(c, Skipped, "not run: --fail-fast stopped the gate after a cell did not pass")
			continue
		case ctx.Err() != nil:
			out[i] = failedCell(c, Skipped, "not run: the gate was stopped")
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cr := runCell(ctx, c, run, o.Dir)
			mu.Lock()
			defer mu.Unlock()
			out[i] = cr
			if o.FailFast && cr.Status != Pass {
				stop = true
				cancel()
			}
			if o.Done != nil {
				o.Done(cr)
			}
		}()
	}
	wg.Wait()
	return out
}

// runCell runs one cell within its time limit.
func runCell(ctx context.Context, c Cell, run CellRunner, dir string) CellResult {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, c.Options.TimeLimit)
	defer cancel()
	cellDir := ""
	if dir != "" {
		cellDir = dir + "/" + DirName(c.Name)
	}
	res, err := run(cctx, c, cellDir)
	var cr CellResult
	switch {
	case err != nil && ctx.Err() != nil:
		cr = failedCell(c, Skipped, "stopped before the cell finished: "+err.Error())
	case err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded):
		cr = failedCell(c, Error, fmt.Sprintf("the cell did not finish within its time limit %s: %v", c.Options.TimeLimit, err))
	case err != nil:
		cr = failedCell(c, Error, err.Error())
	default:
		cr = judgeCell(c, res, cellDir)
	}
	cr.Dir = cellDir
	cr.Seconds = time.Since(start).Seconds()
	return cr
}

// DirName is a cell's name as a directory name: its slashes and spaces
// become dashes.
func DirName(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == '\\' || r < 0x20 {
			return '-'
		}
		return r
	}, name)
}

// DefaultJobs is how many cells run at once by default: one guest per
// core (a guest has one vCPU; on this project's 2-core TCG machine the
// default gate ran 1.62x faster with two cells at once than with one, make
// bench's BenchmarkGate), no more than the memory available holds guests
// of memoryMB each with 512 MB to spare for qemu and the host, and at
// least one.
func DefaultJobs(memoryMB int) int {
	j := runtime.NumCPU()
	if avail := memAvailableMB(); avail > 0 {
		j = min(j, avail/(memoryMB+512))
	}
	return max(j, 1)
}

// memAvailableMB is MemAvailable of /proc/meminfo, 0 when unknown.
func memAvailableMB() int {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.Atoi(f[0])
				return kb / 1024
			}
		}
	}
	return 0
}
