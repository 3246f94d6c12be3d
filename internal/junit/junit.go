// Package junit holds the JUnit XML shape that CI systems (Jenkins,
// GitLab, GitHub Actions reporters) read: testsuites > testsuite >
// testcase with an optional failure, error or skipped child. kata-cr's
// reports and its gate both write it.
package junit

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Suites is the document.
type Suites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Name     string   `xml:"name,attr"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Errors   int      `xml:"errors,attr"`
	Skipped  int      `xml:"skipped,attr"`
	Time     string   `xml:"time,attr,omitempty"`
	Suites   []Suite  `xml:"testsuite"`
}

// Suite is one testsuite.
type Suite struct {
	Name       string     `xml:"name,attr"`
	Tests      int        `xml:"tests,attr"`
	Failures   int        `xml:"failures,attr"`
	Errors     int        `xml:"errors,attr"`
	Skipped    int        `xml:"skipped,attr"`
	Time       string     `xml:"time,attr,omitempty"`
	Properties []Property `xml:"properties>property,omitempty"`
	Cases      []Case     `xml:"testcase"`
	SystemOut  *Text      `xml:"system-out,omitempty"`
}

// Property is a name and a value of a testsuite.
type Property struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// Case is one testcase: passed unless it has a Failure, an Error or
// Skipped.
type Case struct {
	Classname string   `xml:"classname,attr"`
	Name      string   `xml:"name,attr"`
	Time      string   `xml:"time,attr,omitempty"`
	Failure   *Problem `xml:"failure,omitempty"`
	Error     *Problem `xml:"error,omitempty"`
	Skipped   *Skip    `xml:"skipped,omitempty"`
	SystemOut *Text    `xml:"system-out,omitempty"`
}

// Problem is a failure or an error: its message, its type, and its text.
type Problem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Body    string `xml:",cdata"`
}

// Skip says why a testcase was skipped.
type Skip struct {
	Message string `xml:"message,attr"`
}

// Text keeps multi-line text readable: CDATA instead of &#xA;.
type Text struct {
	Text string `xml:",cdata"`
}

// NewText is s as a text element; nil when s is empty.
func NewText(s string) *Text {
	if s == "" {
		return nil
	}
	return &Text{Text: Safe(s)}
}

// NewProblem is a failure or an error whose text is its message and body.
func NewProblem(message, typ, body string) *Problem {
	return &Problem{Message: Safe(message), Type: typ, Body: Safe(body)}
}

// Safe replaces what XML 1.0 cannot carry (control characters from a
// log, broken UTF-8), which CDATA, unlike escaped text, would pass
// through.
func Safe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == utf8.RuneError, r >= 0xD800 && r <= 0xDFFF, r == 0xFFFE, r == 0xFFFF:
			return '\uFFFD'
		}
		return r
	}, s)
}

// Count sets the suite's tests, failures, errors and skipped from its
// cases.
func (s *Suite) Count() {
	s.Tests, s.Failures, s.Errors, s.Skipped = len(s.Cases), 0, 0, 0
	for _, c := range s.Cases {
		switch {
		case c.Failure != nil:
			s.Failures++
		case c.Error != nil:
			s.Errors++
		case c.Skipped != nil:
			s.Skipped++
		}
	}
}

// Add appends a counted suite and adds its counts to the document's.
func (d *Suites) Add(s Suite) {
	s.Count()
	d.Tests += s.Tests
	d.Failures += s.Failures
	d.Errors += s.Errors
	d.Skipped += s.Skipped
	d.Suites = append(d.Suites, s)
}

// Write writes the document with its XML header, indented, ending in a
// newline.
func (d *Suites) Write(w io.Writer) error {
	b, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encode junit xml: %w", err)
	}
	if _, err := io.WriteString(w, xml.Header+string(b)+"\n"); err != nil {
		return fmt.Errorf("write junit xml: %w", err)
	}
	return nil
}
