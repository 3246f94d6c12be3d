package reports

import (
	"fmt"
	"io"
	"time"
)

// Format is an output format.
type Format string

// The output formats.
const (
	Text     Format = "text"
	JSON     Format = "json"
	JUnit    Format = "junit"
	Markdown Format = "markdown"
	// Prometheus is node_exporter textfile metrics (prometheus.go).
	Prometheus Format = "prometheus"
)

// Options control rendering.
type Options struct {
	Format Format
	// Color is decided once by the caller (flag, NO_COLOR, terminal).
	Color bool
	// All shows every finding in text; by default passes are counted per
	// category on one line each, and a skip is one line with its reason.
	All bool
	// Quiet prints only the verdict in text.
	Quiet bool
	// Now is the time of the run the Prometheus format reports; zero
	// means the time of rendering.
	Now time.Time
}

// ParseFormat checks a format name given by the user.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Text, JSON, JUnit, Markdown, Prometheus:
		return Format(s), nil
	case "md":
		return Markdown, nil
	}
	return "", fmt.Errorf("output format %q: use text, json, junit, markdown or prometheus", s)
}

// Render writes r to w in the format of opts.
func Render(w io.Writer, r *Report, opts Options) error {
	switch opts.Format {
	case JSON:
		return renderJSON(w, r)
	case JUnit:
		// XML 1.0 has no control characters but tab and newline.
		return renderJUnit(w, terminalSafe(r))
	case Markdown:
		return renderMarkdown(w, terminalSafe(r))
	case Prometheus:
		now := opts.Now
		if now.IsZero() {
			now = time.Now()
		}
		return renderPrometheus(w, r, now)
	default:
		return renderText(w, terminalSafe(r), opts)
	}
}
