package crjob

import (
	"errors"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/reports"
)

// criuFailure fills what a failed CRIU call tells: the headline, the log's
// explanations.
func criuFailure(cp *reports.Checkpoint, err error) {
	cp.Error = err.Error()
	var ce *criu.Error
	if errors.As(err, &ce) {
		cp.Explanations = ce.Explanations
		cp.CRIUHung = ce.Hung
	}
}
