package crjob

import (
	"context"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// dumpTiming is the freeze of a dump as CRIU's statistics give it; without
// them (a CRIU that wrote none), the dump's whole duration stands in: the
// tree is frozen for at most that long.
func dumpTiming(res *criu.DumpResult) *reports.Timing {
	t := &reports.Timing{FreezeSeconds: res.Duration.Seconds()}
	st, err := criu.ReadDumpStats(res.ImagesDir)
	if err != nil {
		return t
	}
	if f := st.Freeze(); f > 0 {
		t.FreezeSeconds = f.Seconds()
	}
	t.MemdumpSeconds = st.MemdumpTime.Seconds()
	t.MemwriteSeconds = st.MemwriteTime.Seconds()
	t.PagesWritten = st.PagesWritten
	t.PagesSkippedParent = st.PagesSkippedParent
	return t
}

// checker is a CRIU that runs `criu check`; *criu.Binary is one.
type checker interface {
	Check(ctx context.Context, category string) (criu.CheckResult, error)
}

// warmKerndat runs `criu check` once in a guest waiting for its images, so
// that CRIU probes the kernel now and the restore loads the probes from
// its cache instead of doing it while the workload is gone.
func warmKerndat(ctx context.Context, h Host, cr CRIU) {
	c, ok := cr.(checker)
	if !ok {
		return
	}
	res, err := c.Check(ctx, criu.CategoryRequired)
	switch {
	case err != nil:
		h.Logf("criu check before the images came: %v", err)
	case !res.OK:
		h.Logf("criu check before the images came failed (exit %d): the restore probes the kernel itself", res.ExitCode)
	}
}
