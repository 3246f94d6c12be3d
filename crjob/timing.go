package crjob

import (
	"context"
	"slices"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
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

// earlyRootfs is the rootfs and sandbox a restore guest built for the
// workload the host announced, before the images came.
type earlyRootfs struct {
	w     container.Workload
	paths paths
	sb    container.SandboxFiles
}

// prepareEarly builds the announced named workload's rootfs and sandbox
// while the guest waits for the images; nil when none was announced (a
// bundle's rootfs comes from its share) or it is not known here, and the
// restore builds them once the manifest came.
func (d *Deps) prepareEarly(o agentapi.RestoreOptions) (*earlyRootfs, error) {
	if o.Workload == "" || o.RootfsTag != "" {
		return nil, nil
	}
	w, err := container.LookupWorkload(o.Workload, o.Command)
	if err != nil {
		return nil, nil
	}
	p, err := newPaths(d.root())
	if err != nil {
		return nil, err
	}
	d.Host.Progress("prepare", "preparing the rootfs and the sandbox for %s while the images are on their way", w.Name)
	if err := d.Runtime.PrepareRootfs(p.rootfs, w, d.Guest.ExtraFiles); err != nil {
		return nil, err
	}
	sb, err := d.Runtime.PrepareSandbox(p.sandbox, SandboxHostname)
	if err != nil {
		return nil, err
	}
	return &earlyRootfs{w: w, paths: p, sb: sb}, nil
}

// fits says whether the early rootfs is the one the checkpoint's workload
// w needs.
func (e *earlyRootfs) fits(w container.Workload) bool {
	return e != nil && e.w.Name == w.Name && slices.Equal(e.w.Args, w.Args) && w.RootfsTag == ""
}
