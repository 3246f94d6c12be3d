package reports

// MergeRestore copies the outcome of the restore report rr into r, the
// report of the checkpoint it restored: the restore's fields, its actions
// and its findings (as restore.ID).
func (r *Report) MergeRestore(rr *Report) {
	cp, rc := r.Checkpoint, rr.Checkpoint
	if r.Target.Kind == "" {
		r.Target = rr.Target
	}
	cp.RestoreRan = true
	cp.RestoreOK = rc.RestoreOK
	cp.RestoreOptions = rc.RestoreOptions
	cp.RestoreSeconds = rc.RestoreSeconds
	cp.RestoredPID = rc.RestoredPID
	cp.Verified = rc.Verified
	cp.Verification = rc.Verification
	if cp.StateBefore == nil {
		cp.StateBefore = rc.StateBefore
	}
	cp.StateAfter = rc.StateAfter
	cp.SandboxFilesSeen = rc.SandboxFilesSeen
	cp.RestoredContainer = rc.RestoredContainer
	cp.Probes = append(cp.Probes, rc.Probes...)
	cp.Stage = rc.Stage
	if rc.Error != "" {
		cp.Error = "restore: " + rc.Error
	}
	cp.Explanations = append(cp.Explanations, rc.Explanations...)
	for _, a := range rr.Actions {
		a.Summary = "restore guest: " + a.Summary
		r.Actions = append(r.Actions, a)
	}
	for _, f := range rr.Findings {
		f.ID = "restore." + f.ID
		r.Findings = append(r.Findings, f)
	}
}
