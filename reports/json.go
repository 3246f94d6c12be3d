package reports

import (
	"encoding/json"
	"fmt"
	"io"
)

// renderJSON writes the Report as it is, indented; consumers key on
// schema_version.
func renderJSON(w io.Writer, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report as json: %w", err)
	}
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
