package crjob

import (
	"errors"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// workloadFor picks the workload a job names: a user's command, or a named
// one (the default when neither is given).
func workloadFor(name string, command []string) (container.Workload, error) {
	if len(command) > 0 {
		return container.Command(command), nil
	}
	if name == "" {
		name = container.DefaultWorkload
	}
	return container.Lookup(name)
}

// criuFailure fills what a failed CRIU call tells: the headline, the log's
// explanations.
func criuFailure(cp *reports.Checkpoint, err error) {
	cp.Error = err.Error()
	var ce *criu.Error
	if errors.As(err, &ce) {
		cp.Explanations = ce.Explanations
	}
}
