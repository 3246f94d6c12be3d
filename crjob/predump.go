package crjob

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// preDumper is a CRIU that can pre-dump; *criu.Binary is one.
type preDumper interface {
	PreDump(ctx context.Context, o criu.DumpOpts) (*criu.DumpResult, error)
}

// preDumpPrefix names the directories of the pre-dumps inside the
// images directory: pre-dump-1 ... pre-dump-N. Each pre-dump's parent is
// the one before it and the final dump's is the last, so the checkpoint
// directory holds the whole chain and is sent, saved and checksummed as
// one.
const preDumpPrefix = "pre-dump-"

// parentLink is the link CRIU makes in an images directory to its parent
// images (--prev-images-dir). Links are not sent to the host: the chain
// is linked again before a restore (linkPreDumps).
const parentLink = "parent"

// softDirtyFindings are the checks a pre-dump needs to have passed:
// CRIU's own word that it can track memory changes on this kernel, which
// needs CONFIG_MEM_SOFT_DIRTY.
var softDirtyFindings = []string{"criu.feature.mem_dirty_track", "kernel.MEM_SOFT_DIRTY"}

// canPreDump says whether the checks showed soft-dirty tracking working;
// if not, the refusal says which check did not pass and why.
func canPreDump(findings []reports.Finding) (bool, reports.Refusal) {
	ref := reports.Refusal{Step: "pre-dump"}
	seen := map[string]reports.Finding{}
	for _, f := range findings {
		seen[f.ID] = f
	}
	var why []string
	for _, id := range softDirtyFindings {
		f, ok := seen[id]
		switch {
		case !ok:
			ref.BlockedBy = append(ref.BlockedBy, id)
			why = append(why, id+" did not run")
		case f.Status != reports.Pass:
			ref.BlockedBy = append(ref.BlockedBy, id)
			why = append(why, fmt.Sprintf("%s: %s %s", id, f.Status, joinReason(f)))
		}
	}
	if len(ref.BlockedBy) == 0 {
		return true, ref
	}
	ref.Reason = "soft-dirty memory tracking is not shown to work, so a pre-dump could not leave the final dump less to copy: " +
		strings.Join(why, "; ") + "; the dump copies all the memory at once"
	return false, ref
}

func joinReason(f reports.Finding) string {
	if f.Reason != "" {
		return f.Summary + " (" + f.Reason + ")"
	}
	return f.Summary
}

// preDump runs the pre-dumps the job asks for while the workload runs on,
// and returns the final dump's options: soft-dirty tracking on, the last
// pre-dump as parent. When soft-dirty tracking is not shown to work, or a
// pre-dump fails, the report says so and the final dump copies all the
// memory: the workload keeps running either way.
func (j *cpJob) preDump(ctx context.Context, cr CRIU, do criu.DumpOpts, findings []reports.Finding) criu.DumpOpts {
	n := j.opts.PreDumps
	if n <= 0 {
		return do
	}
	pd, ok := cr.(preDumper)
	if !ok {
		j.cp.Refusals = append(j.cp.Refusals, reports.Refusal{Step: "pre-dump", Reason: "this CRIU cannot pre-dump"})
		return do
	}
	if ok, ref := canPreDump(findings); !ok {
		j.cp.Refusals = append(j.cp.Refusals, ref)
		j.d.Host.Progress("pre-dump", "not pre-dumping: %s", ref.Reason)
		return do
	}
	final := do
	for i := 1; i <= n; i++ {
		o := do
		o.ImagesDir = filepath.Join(do.ImagesDir, preDumpPrefix+strconv.Itoa(i))
		o.WorkDir, o.LogFile = "", ""
		if i > 1 {
			o.ParentDir = filepath.Join("..", preDumpPrefix+strconv.Itoa(i-1))
		}
		j.d.Host.Progress("pre-dump", "criu pre-dump %d of %d (the workload runs on)", i, n)
		pctx, cancel := context.WithTimeout(ctx, dumpTimeout)
		res, err := pd.PreDump(pctx, o)
		cancel()
		if err != nil {
			j.cp.Refusals = append(j.cp.Refusals, reports.Refusal{Step: "pre-dump",
				Reason: fmt.Sprintf("pre-dump %d failed, so the final dump copies all the memory: %v", i, err)})
			_ = os.RemoveAll(o.ImagesDir)
			for k := 1; k < i; k++ {
				_ = os.RemoveAll(filepath.Join(do.ImagesDir, preDumpPrefix+strconv.Itoa(k)))
			}
			return do
		}
		p := reports.PreDump{Seconds: res.Duration.Seconds(), FreezeSeconds: res.Duration.Seconds()}
		if st, err := criu.ReadDumpStats(o.ImagesDir); err == nil {
			p.FreezeSeconds, p.PagesWritten = st.Freeze().Seconds(), st.PagesWritten
		}
		j.preDumps = append(j.preDumps, p)
		j.d.Host.Progress("pre-dump", "pre-dump %d wrote %d pages in %s", i, p.PagesWritten, res.Duration.Round(time.Millisecond))
	}
	final.TrackMem = true
	final.ParentDir = preDumpPrefix + strconv.Itoa(n)
	return final
}

// unlinkPreDumps removes CRIU's parent links from the images directory
// and its pre-dumps, so that the checkpoint holds only regular files.
func unlinkPreDumps(dir string) error {
	dirs, err := preDumpDirs(dir)
	if err != nil {
		return err
	}
	for _, d := range append(dirs, dir) {
		if err := os.Remove(filepath.Join(d, parentLink)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("unlink the pre-dump chain: %w", err)
		}
	}
	return nil
}

// linkPreDumps links the images directory to its last pre-dump and each
// pre-dump to the one before, as CRIU left them, for a restore.
func linkPreDumps(dir string) error {
	dirs, err := preDumpDirs(dir)
	if err != nil || len(dirs) == 0 {
		return err
	}
	link := func(in, target string) error {
		p := filepath.Join(in, parentLink)
		if _, err := os.Lstat(p); err == nil {
			return nil
		}
		if err := os.Symlink(target, p); err != nil {
			return fmt.Errorf("link the pre-dump chain: %w", err)
		}
		return nil
	}
	for i := 1; i < len(dirs); i++ {
		if err := link(dirs[i], filepath.Join("..", filepath.Base(dirs[i-1]))); err != nil {
			return err
		}
	}
	return link(dir, filepath.Base(dirs[len(dirs)-1]))
}

// preDumpDirs lists dir's pre-dump directories in order; it fails on a
// gap in the chain.
func preDumpDirs(dir string) ([]string, error) {
	var out []string
	for i := 1; ; i++ {
		d := filepath.Join(dir, preDumpPrefix+strconv.Itoa(i))
		fi, err := os.Stat(d)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read the pre-dump chain: %w", err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("read the pre-dump chain: %s is not a directory", d)
		}
		out = append(out, d)
	}
	if _, err := os.Stat(filepath.Join(dir, preDumpPrefix+strconv.Itoa(len(out)+2))); err == nil {
		return nil, fmt.Errorf("read the pre-dump chain: %s%d is missing", preDumpPrefix, len(out)+1)
	}
	return out, nil
}
