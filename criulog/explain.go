// Package criulog explains CRIU logs: it finds the error lines of a dump,
// restore or check log (with or without CRIU's "(00.123456)" timestamps and
// pid prefixes), maps each to its cause and fix through the Signatures table
// and quotes it with the lines before it, the way runc's logCriuErrors does.
package criulog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strings"

	"github.com/kata-cr/kata-cr/internal/excerpt"
	"github.com/kata-cr/kata-cr/reports"
)

// ErrNotText is returned for input that is binary data rather than a log.
var ErrNotText = errors.New("binary data, not a CRIU log (give the text log criu wrote with --log-file)")

// UnknownSignature is the Signature of an Explanation for an error line
// that no signature matches.
const UnknownSignature = "unknown"

const (
	// contextLines is how many lines before an error line are quoted.
	contextLines = 4
	// maxQuoteLen keeps a garbage line from flooding a report.
	maxQuoteLen = 400
	// maxUnknown caps the unknown errors explained per log: a log that
	// fails in a way kata-cr does not know can hold thousands of them.
	maxUnknown = 10
)

var (
	timestampRE = regexp.MustCompile(`^\(\s*\d+\.\d+\)\s?`)
	// Restore logs and --log-pid put the pid before the message.
	pidRE = regexp.MustCompile(`^\s*\d+:\s`)
	// The parasite's messages come through as "pie: 1: ...".
	pieRE   = regexp.MustCompile(`^pie: \d+:\s`)
	errorRE = regexp.MustCompile(`\bError\s*\([^()]*\):\s?(.*)$`)
	// libnftables prints "Error: ..." without a source location.
	plainErrorRE = regexp.MustCompile(`^Error: (.*)$`)
	warnRE       = regexp.MustCompile(`\bWarn\s*\([^()]*\):`)
)

type lineKind int

const (
	otherLine lineKind = iota
	// foreignLine is a line without CRIU's timestamp in a log that has
	// them elsewhere, or any non-error line of a log without them: text
	// that libraries (libnftables) wrote straight into CRIU's output.
	foreignLine
	errorLine
	warnLine
)

// classify strips CRIU's prefixes from a log line and says whether it is
// an error, a warning or anything else, with its message. The cheap
// substring tests keep the regular expressions off most lines of a long
// dump log.
func classify(raw string) (lineKind, string) {
	s := strings.TrimRight(raw, "\r\n\t ")
	stamped := false
	if strings.HasPrefix(s, "(") {
		if loc := timestampRE.FindStringIndex(s); loc != nil {
			s, stamped = s[loc[1]:], true
		}
	}
	if s != "" && (s[0] == ' ' || s[0] >= '0' && s[0] <= '9') {
		s = pidRE.ReplaceAllString(s, "")
	}
	if strings.HasPrefix(s, "pie: ") {
		s = pieRE.ReplaceAllString(s, "")
	}
	if strings.Contains(s, "Error") {
		if m := errorRE.FindStringSubmatch(s); m != nil {
			return errorLine, strings.TrimSpace(m[1])
		}
		if m := plainErrorRE.FindStringSubmatch(s); m != nil {
			return errorLine, strings.TrimSpace(m[1])
		}
	}
	if strings.Contains(s, "Warn") && warnRE.MatchString(s) {
		return warnLine, s
	}
	if stamped {
		return otherLine, strings.TrimSpace(s)
	}
	return foreignLine, strings.TrimSpace(s)
}

// match returns the first signature for a message, with its submatches.
func match(kind lineKind, msg string) (*Signature, []string) {
	if kind == warnLine || kind == otherLine || msg == "" {
		return nil, nil
	}
	for i := range Signatures {
		s := &Signatures[i]
		if kind == foreignLine && !s.AnyLine {
			continue
		}
		if m := s.Pattern.FindStringSubmatch(msg); m != nil {
			return s, m
		}
	}
	return nil, nil
}

// MaxLogSize bounds what Explain reads: a dump log at CRIU's most verbose
// level is a few megabytes; more than this is not a CRIU log.
const MaxLogSize = 256 << 20

// ErrTooLarge is returned for a log over MaxLogSize.
var ErrTooLarge = fmt.Errorf("larger than %d MiB: not a CRIU log", MaxLogSize>>20)

// Explain reads a CRIU log from r and explains its errors. source names the
// log in the explanations. It fails only when r cannot be read, holds
// binary data or is larger than MaxLogSize.
func Explain(source string, r io.Reader) ([]reports.Explanation, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxLogSize+1))
	if err == nil && len(data) > MaxLogSize {
		err = ErrTooLarge
	}
	if err != nil {
		// A *fs.PathError repeats the operation and path that we name.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("read %s: %w", source, err)
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, fmt.Errorf("read %s: %w", source, ErrNotText)
	}
	text := strings.TrimSuffix(string(data), "\n")
	if text == "" {
		return nil, nil
	}
	return ExplainLines(source, strings.Split(text, "\n")), nil
}

// ExplainLines explains the error lines among lines, in the order they
// first appear: one explanation per known signature, one per distinct
// unknown error. Follow-on lines ("Dumping FAILED.") are explained only
// when nothing before them says why CRIU failed.
func ExplainLines(source string, lines []string) []reports.Explanation {
	var out []reports.Explanation
	seen := map[string]bool{}
	unknown := 0
	followOn := -1
	var followSig *Signature
	for i, raw := range lines {
		kind, msg := classify(raw)
		sig, m := match(kind, msg)
		switch {
		case sig != nil && sig.FollowOn:
			if followOn < 0 {
				followOn, followSig = i, sig
			}
		case sig != nil:
			if seen[sig.ID] {
				continue
			}
			seen[sig.ID] = true
			out = append(out, reports.Explanation{
				Source: source, Line: i + 1, Signature: sig.ID, Known: true,
				Cause: expand(sig.Cause, sig.Pattern, m), Fix: expand(sig.Fix, sig.Pattern, m),
				Quote: quote(lines, i),
			})
		case kind == errorLine:
			key := UnknownSignature + "\x00" + msg
			if seen[key] {
				continue
			}
			seen[key] = true
			if unknown++; unknown > maxUnknown {
				continue
			}
			out = append(out, reports.Explanation{
				Source: source, Line: i + 1, Signature: UnknownSignature, Known: false,
				Cause: "Unknown error, not in kata-cr's signature table: " + excerpt.Clip(msg, maxQuoteLen),
				Fix:   "Read the quoted lines; rerun CRIU with -v4 and --log-file for more context.",
				Quote: quote(lines, i),
			})
		}
	}
	if unknown > maxUnknown {
		for i := len(out) - 1; i >= 0; i-- {
			if out[i].Signature == UnknownSignature {
				out[i].Cause += fmt.Sprintf(" (%d more distinct unknown error lines follow in the log)", unknown-maxUnknown)
				break
			}
		}
	}
	if len(out) == 0 && followOn >= 0 {
		_, msg := classify(lines[followOn])
		out = append(out, reports.Explanation{
			Source: source, Line: followOn + 1, Signature: followSig.ID, Known: false,
			Cause: fmt.Sprintf("CRIU failed (%s) but no earlier error line in this log says why.", excerpt.Clip(msg, maxQuoteLen)),
			Fix:   "Rerun CRIU with -v4 and --log-file, and read the lines before this one.",
			Quote: quote(lines, followOn),
		})
	}
	return out
}

// expand fills ${name} in tmpl from the named groups of re's match m.
func expand(tmpl string, re *regexp.Regexp, m []string) string {
	for i, name := range re.SubexpNames() {
		if name == "" || i >= len(m) {
			continue
		}
		v := m[i]
		if name == "mountpoint" {
			// CRIU prints mount points relative to the root: "./etc/hosts".
			v = strings.TrimPrefix(v, ".")
			if v == "" {
				v = "/"
			}
		}
		tmpl = strings.ReplaceAll(tmpl, "${"+name+"}", v)
	}
	return tmpl
}

// quote returns line i with the few lines before it, as they are in the log.
func quote(lines []string, i int) []string {
	start := max(i-contextLines, 0)
	q := make([]string, 0, i-start+1)
	for _, l := range lines[start : i+1] {
		q = append(q, excerpt.Clip(strings.TrimRight(l, "\r\n\t "), maxQuoteLen))
	}
	return q
}
