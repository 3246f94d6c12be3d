package crjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/criulog"
	"github.com/kata-cr/kata-cr/reports"
)

// prove backs each prediction that a CRIU option works around with CRIU's
// own answer: for every finding the planned dump works around, it dumps
// once without that finding's options, with --leave-running into a scratch
// directory, and checks that CRIU fails on the cause the finding named. A
// dump that succeeds there proves the finding wrong. The workload runs on
// either way: CRIU thaws the tree when a dump fails and leaves it running
// when told to.
func (j *cpJob) prove(ctx context.Context, cr CRIU, fs []reports.Finding, planned criu.DumpOpts) []reports.Finding {
	var out []reports.Finding
	for i, f := range fs {
		if f.Fix == nil || f.Fix.CRIU.IsZero() || (f.Status != reports.Fail && f.Status != reports.Warn) {
			continue
		}
		// Nothing to prove when the plan does not hold the finding's
		// options.
		without := planned
		without.Set = planned.Without(f.Fix.CRIU)
		if without.Equal(planned.Set) {
			continue
		}
		opts := f.Fix.CRIU.DumpLine()
		p := reports.Finding{ID: "checkpoint.proof." + f.ID, Category: "checkpoint", Level: reports.Optional,
			Evidence: []string{"criu dump " + without.DumpLine()}}
		dir := filepath.Join(j.paths.root, fmt.Sprintf("proof-%d", i))
		without.ImagesDir, without.WorkDir, without.LeaveRunning = dir, dir, true
		j.d.Host.Progress("prove", "dump without %s, as %s predicts it fails", opts, f.ID)
		dctx, cancel := context.WithTimeout(ctx, dumpTimeout)
		_, err := cr.Dump(dctx, without)
		cancel()
		_ = os.RemoveAll(dir)
		sig, ids, quote := causeOf(err)
		j.cp.Proofs = append(j.cp.Proofs, reports.Proof{Finding: f.ID, Without: opts, Failed: err != nil,
			Signature: sig, Confirmed: err != nil && slices.Contains(ids, f.ID)})
		switch {
		case err == nil:
			p.Status = reports.Fail
			p.Summary = fmt.Sprintf("without %s the dump succeeded: %s predicted a failure", opts, f.ID)
		case slices.Contains(ids, f.ID):
			p.Status = reports.Pass
			p.Summary = fmt.Sprintf("without %s CRIU fails on %s, as %s predicted", opts, sig, f.ID)
		default:
			p.Status = reports.Warn
			p.Summary = fmt.Sprintf("without %s CRIU fails, but on %s rather than on what %s names", opts, orUnknown(sig), f.ID)
		}
		p.Evidence = append(p.Evidence, quote...)
		if !j.ctr.Running() {
			p.Status = reports.Error
			p.Reason = "the workload stopped during the proof dump"
			out = append(out, p)
			return out
		}
		out = append(out, p)
	}
	return out
}

// causeOf names the first cause CRIU's log explains for a failed dump: the
// signature, the kata-cr findings that predict it, and the quoted lines.
// Follow-on lines ("Dumping FAILED") are not causes.
func causeOf(dumpErr error) (signature string, findings []string, quote []string) {
	var ce *criu.Error
	if !errors.As(dumpErr, &ce) {
		return "", nil, nil
	}
	for _, x := range ce.Explanations {
		if !x.Known {
			continue
		}
		if sig, ok := criulog.SignatureByID(x.Signature); ok && len(sig.Findings) > 0 {
			return x.Signature, sig.Findings, x.Quote
		}
	}
	return "", nil, nil
}

func orUnknown(sig string) string {
	if sig == "" {
		return "a cause kata-cr does not know"
	}
	return sig
}
