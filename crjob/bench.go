package crjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// bench times, in this guest, kata-cr's restore of the images just dumped
// and then a raw `criu dump` and `criu restore -d` (the command line, no
// RPC) of a fresh copy of the same workload with the same options, so that
// kata-cr's cost shows next to CRIU's own.
func (j *cpJob) bench(ctx context.Context, cr CRIU, do criu.DumpOpts, dumped time.Duration) error {
	if !j.opts.Bench {
		return nil
	}
	bin, ok := cr.(*criu.Binary)
	if !ok {
		return errors.New("bench: needs the criu binary, not an injected CRIU")
	}
	j.d.Host.Progress("bench", "timing kata-cr's restore and raw criu dump and restore")
	bctx, cancel := context.WithTimeout(ctx, 2*dumpTimeout)
	b, err := j.timeBench(bctx, bin, do, dumped)
	cancel()
	if err != nil {
		j.r.Findings = append(j.r.Findings, reports.Finding{ID: "checkpoint.bench", Category: "checkpoint", Level: reports.Optional,
			Status: reports.Error, Summary: "the benchmark could not run", Reason: err.Error()})
		return nil
	}
	return j.d.Host.Result(agentapi.ResultBench, b)
}

// timeBench takes the measurements of bench.
func (j *cpJob) timeBench(ctx context.Context, bin *criu.Binary, do criu.DumpOpts, dumped time.Duration) (*agentapi.BenchResult, error) {
	b := &agentapi.BenchResult{Workload: j.w.Name, KataCRDump: dumped.Seconds()}
	ro := criu.RestoreOpts{Set: do.RestoreNeeds()}
	ro.ImagesDir = j.paths.images
	ro.WorkDir = filepath.Join(j.paths.root, "bench-work")
	ro.Root = j.paths.rootfs
	ro.RestoreSibling = true
	for _, m := range do.ExternalMounts {
		src, err := externalSource(m.Key, m.Path, j.spec.Sandbox)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		ro.ExternalMounts = append(ro.ExternalMounts, criu.ExternalMount{Key: m.Key, Path: src})
	}
	if j.ctr != nil {
		_ = j.ctr.Kill()
	}
	if err := linkPreDumps(ro.ImagesDir); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res, err := bin.Restore(ctx, ro)
	if err != nil {
		return nil, fmt.Errorf("bench: kata-cr restore: %w", err)
	}
	b.KataCRRestore = res.Duration.Seconds()
	if c, err := j.d.Runtime.Adopt(res.PID, j.paths.rootfs); err == nil {
		_ = c.Kill()
	}

	// The same workload again, from its start, for raw criu.
	if _, err := j.start(ctx); err != nil {
		return nil, fmt.Errorf("bench: start the workload again: %w", err)
	}
	raw := filepath.Join(j.paths.root, "bench-raw")
	if err := os.RemoveAll(raw); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(raw, 0o700); err != nil {
		return nil, err
	}
	rawOpts := do.Set
	rawOpts.LeaveRunning = false
	dargs := append([]string{"dump", "-t", strconv.Itoa(j.ctr.PID()), "-D", raw, "-o", "dump.log", "-v4"}, rawOpts.DumpArgs()...)
	b.RawDumpCommand = append([]string{bin.Path}, dargs...)
	t0 := j.d.now()
	if out, err := exec.CommandContext(ctx, bin.Path, dargs...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: raw criu dump: %w: %s (log %s)", err, strings.TrimSpace(string(out)), filepath.Join(raw, "dump.log"))
	}
	b.RawDump = j.d.now().Sub(t0).Seconds()
	_ = j.ctr.Kill()

	pidfile := filepath.Join(j.paths.root, "bench-raw.pid")
	// The raw restore detaches (-d) instead of restoring as our sibling;
	// everything else is kata-cr's restore.
	rawRO := ro
	rawRO.RestoreSibling = false
	rargs := append([]string{"restore", "-D", raw, "-o", "restore.log", "-v4", "-d", "--pidfile", pidfile}, rawRO.Args()...)
	t0 = j.d.now()
	if out, err := exec.CommandContext(ctx, bin.Path, rargs...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: raw criu restore: %w: %s (log %s)", err, strings.TrimSpace(string(out)), filepath.Join(raw, "restore.log"))
	}
	b.RawRestore = j.d.now().Sub(t0).Seconds()
	if data, err := os.ReadFile(pidfile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return b, nil
}
