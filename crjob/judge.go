package crjob

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// judgePlain lets CRIU judge the prediction made before any fix (--prove):
// it dumps the workload as it was started, with none of the options
// kata-cr would plan, with --leave-running into a scratch directory, and
// records whether CRIU agreed and on which cause it failed. A tree the
// prediction says CRIU cannot seize gets CRIU's own short freeze timeout,
// so that CRIU answers rather than waits.
func (j *cpJob) judgePlain(ctx context.Context, pred *reports.Prediction) {
	cr := j.d.criu(j.env)
	if cr == nil || j.ctr == nil {
		return
	}
	dir := filepath.Join(j.paths.root, "plain")
	o := criu.DumpOpts{PID: j.ctr.PID(), ImagesDir: dir, WorkDir: dir}
	o.LeaveRunning = true
	limit := dumpTimeout
	if len(checks.WouldHang(pred)) > 0 {
		o.FreezeTimeout, limit = hangProofFreeze, hangProofLimit
	}
	j.d.Host.Progress("judge", "criu dump with no options, as the workload was started (%s)", predictionLine(pred))
	dctx, cancel := context.WithTimeout(ctx, limit)
	res, err := cr.Dump(dctx, o)
	cancel()
	_ = os.RemoveAll(dir)
	j.cp.Plain = rawDump(o, res, err, pred)
	j.thawed(container.Probe{PID: j.ctr.PID()})
}

// rawDump is what one judging dump showed, next to the prediction pred.
func rawDump(o criu.DumpOpts, res *criu.DumpResult, err error, pred *reports.Prediction) *reports.RawDump {
	raw := &reports.RawDump{Options: o.DumpArgs(), OK: err == nil}
	if res != nil {
		raw.Seconds = res.Duration.Seconds()
	}
	if err != nil {
		raw.Signature, raw.PredictedBy = predictedCause(pred, err)
		raw.Unexplained = raw.Signature == ""
		var ce *criu.Error
		raw.Hung = errors.As(err, &ce) && ce.Hung
	}
	return raw
}
