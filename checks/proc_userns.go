package checks

import (
	"context"
	"fmt"

	"github.com/kata-cr/kata-cr/reports"
)

// checkProcUserNS finds processes of the tree in a user namespace other
// than the root's: CRIU dumps the user namespace of the tree's root only
// and refuses nested ones ("Can't dump nested user namespace for N", then
// "Can't make userns id"), whatever the options. A process that created a
// user namespace (unshare -U, a rootless sandbox inside the container)
// cannot be dumped.
func checkProcUserNS(_ context.Context, t *procTree) []reports.Finding {
	rootNS, err := t.nsLink(t.Root.PID, "user")
	if err != nil {
		return []reports.Finding{{Status: reports.Skip, Summary: "user namespace of the tree unknown", Reason: err.Error()}}
	}
	ev := []string{fmt.Sprintf("%s: ns/user %s", t.Root.label(), rootNS)}
	var nested []string
	for _, p := range t.Procs[1:] {
		ns, err := t.nsLink(p.PID, "user")
		if err != nil {
			continue // exited meanwhile
		}
		if ns != rootNS {
			nested = append(nested, fmt.Sprintf("%s: ns/user %s", p.label(), ns))
		}
	}
	ev = append(ev, procVanished(t, nil)...)
	if len(nested) > 0 {
		return []reports.Finding{{Status: reports.Fail, Evidence: append(ev, nested...),
			Summary: fmt.Sprintf("%s of the tree in nested user namespaces: CRIU: \"Can't dump nested user namespace\"", procN(len(nested), "process", "processes")),
			Fix:     &reports.Fix{Description: "run the workload without creating user namespaces inside it; no CRIU option dumps a nested user namespace"}}}
	}
	return []reports.Finding{{Status: reports.Pass, Evidence: ev,
		Summary: fmt.Sprintf("every process of the tree is in the user namespace %s of its root", rootNS)}}
}
