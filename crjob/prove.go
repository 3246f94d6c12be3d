package crjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
		if f.Fix == nil || len(f.Fix.CRIUOptions) == 0 || (f.Status != reports.Fail && f.Status != reports.Warn) {
			continue
		}
		without, ok := withoutOptions(planned, f.Fix.CRIUOptions)
		if !ok {
			continue
		}
		p := reports.Finding{ID: "checkpoint.proof." + f.ID, Category: "checkpoint", Level: reports.Optional,
			Evidence: []string{"criu dump " + strings.Join(without.Args(), " ")}}
		dir := filepath.Join(j.paths.root, fmt.Sprintf("proof-%d", i))
		without.ImagesDir, without.WorkDir, without.LeaveRunning = dir, dir, true
		j.d.Host.Progress("prove", "dump without %s, as %s predicts it fails", strings.Join(f.Fix.CRIUOptions, " "), f.ID)
		dctx, cancel := context.WithTimeout(ctx, dumpTimeout)
		_, err := cr.Dump(dctx, without)
		cancel()
		_ = os.RemoveAll(dir)
		sig, ids, quote := causeOf(err)
		switch {
		case err == nil:
			p.Status = reports.Fail
			p.Summary = fmt.Sprintf("without %s the dump succeeded: %s predicted a failure", strings.Join(f.Fix.CRIUOptions, " "), f.ID)
		case slices.Contains(ids, f.ID):
			p.Status = reports.Pass
			p.Summary = fmt.Sprintf("without %s CRIU fails on %s, as %s predicted", strings.Join(f.Fix.CRIUOptions, " "), sig, f.ID)
		default:
			p.Status = reports.Warn
			p.Summary = fmt.Sprintf("without %s CRIU fails, but on %s rather than on what %s names", strings.Join(f.Fix.CRIUOptions, " "), orUnknown(sig), f.ID)
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

// withoutOptions returns planned without the options of one finding (each
// a criu word such as --file-locks or --external=mnt[/etc/hosts]:hosts);
// ok is false when the plan does not hold them, so nothing can be proved.
func withoutOptions(planned criu.DumpOpts, words []string) (criu.DumpOpts, bool) {
	drop, err := criu.ParseDumpArgs(words)
	if err != nil {
		return planned, false
	}
	o := planned
	o.ExternalMounts = slices.Clone(planned.ExternalMounts)
	o.External = slices.Clone(planned.External)
	changed := false
	unset := func(on bool, field *bool) {
		if on && *field {
			*field, changed = false, true
		}
	}
	unset(drop.ShellJob, &o.ShellJob)
	unset(drop.FileLocks, &o.FileLocks)
	unset(drop.TCPEstablished, &o.TCPEstablished)
	unset(drop.ExtUnixSk, &o.ExtUnixSk)
	for _, m := range drop.ExternalMounts {
		if i := slices.Index(o.ExternalMounts, m); i >= 0 {
			o.ExternalMounts = slices.Delete(o.ExternalMounts, i, i+1)
			changed = true
		}
	}
	for _, e := range drop.External {
		if i := slices.Index(o.External, e); i >= 0 {
			o.External = slices.Delete(o.External, i, i+1)
			changed = true
		}
	}
	return o, changed
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
