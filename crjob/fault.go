package crjob

import (
	"fmt"
	"syscall"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
)

// injectFault arms the fault the job asks for (kata-cr's fault tests) on
// the dump's options and returns the function that records in the report
// what happened; without a fault it does nothing.
//
// FaultKillCRIU kills CRIU (SIGKILL) at its post-dump notification: the
// images are written, the tree is stopped under CRIU's ptrace hold and
// CRIU waits for the answer. That is the one moment in a dump that is both
// in the middle of it and the same on every run: earlier, a kill can land
// while CRIU's parasite code runs inside the workload, and CRIU itself
// then loses the workload, whatever kata-cr does.
func (j *cpJob) injectFault(do *criu.DumpOpts) (record func()) {
	if j.opts.Fault != agentapi.FaultKillCRIU {
		return func() {}
	}
	killed, err := 0, error(nil)
	do.AtPostDump = func(pid int) {
		if err = syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed = pid
		}
	}
	return func() {
		do.AtPostDump = nil
		f := reports.Finding{ID: "checkpoint.fault", Category: "checkpoint", Level: reports.Optional, Status: reports.Warn,
			Summary: fmt.Sprintf("fault injected: criu (pid %d) was killed at its post-dump notification, holding the tree stopped", killed)}
		if killed == 0 {
			f.Summary = "fault injected: criu was not killed during the dump"
			if err != nil {
				f.Evidence = []string{fmt.Sprintf("kill: %v", err)}
			} else {
				f.Evidence = []string{"criu sent no post-dump notification"}
			}
		}
		j.r.Findings = append(j.r.Findings, f)
	}
}
