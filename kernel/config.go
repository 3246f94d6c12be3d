// Package kernel reads kernel configurations from every place they are
// found (a .config, a gzip'd config, /proc/config.gz, an image with IKCONFIG,
// a Kata fragment tree) and holds the tables of what CRIU needs from a
// kernel: the options, the CRIU/kernel compatibility rows, the modules a
// guest must load. It holds no policy and prints nothing; it changes the
// running kernel only when LoadModules is called.
package kernel

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/kata-cr/kata-cr/internal/excerpt"
)

// State is how an option is set in a config.
type State string

// The states of a tristate or bool option.
const (
	Enabled State = "enabled" // =y
	Module  State = "module"  // =m
	Missing State = "missing" // unset, =n, or "is not set"
)

// Config is a parsed kernel configuration.
type Config struct {
	// Values maps an option name without the CONFIG_ prefix to its value
	// as written (y, m, a number, a quoted string). Options set to n or
	// "is not set" are absent.
	Values map[string]string
	// Source names where the config was read from.
	Source string
	// Arch is the Kata architecture name (x86_64, arm64, s390, powerpc,
	// riscv) the config is for, "" when it cannot be told.
	Arch string
	// Version is the kernel version named in the config's header comment
	// ("6.1.0"), "" when there is none (fragment trees have none).
	Version string
	// Origin says, for a config merged from fragments, which fragment set
	// or unset each option last.
	Origin map[string]string
	// Implied holds the options of a fragment tree that no fragment sets
	// but that Kconfig turns on anyway (no prompt, or selected by another
	// option), with the reason.
	Implied map[string]string
	// Fragments lists the fragment files merged, in merge order, and
	// Excluded those skipped because their header excludes the arch.
	Fragments []string
	Excluded  []string
	// BadLines counts lines that are neither options nor comments; they
	// are skipped, and Warnings says where the first ones are.
	BadLines int
	Warnings []string
}

// State returns how option name (with or without CONFIG_) is set.
func (c *Config) State(name string) State {
	v, ok := c.Values[strings.TrimPrefix(name, "CONFIG_")]
	switch {
	case !ok:
		return Missing
	case v == "m":
		return Module
	case v == "n" || v == "":
		return Missing
	default:
		return Enabled
	}
}

// On reports whether option name is =y or =m.
func (c *Config) On(name string) bool {
	return c.State(name) != Missing
}

var (
	setLine    = regexp.MustCompile(`^CONFIG_([A-Za-z0-9_]+)=(.*)$`)
	unsetLine  = regexp.MustCompile(`^#\s*CONFIG_([A-Za-z0-9_]+) is not set\s*$`)
	headerLine = regexp.MustCompile(`^# Linux/\S+ (\d+\.\d+[^ ]*) Kernel Configuration`)
	plainValue = regexp.MustCompile(`^(y|m|n|-?[0-9]+|0[xX][0-9a-fA-F]+)$`)
)

// maxBadLinesQuoted bounds how many bad lines Warnings quotes.
const maxBadLinesQuoted = 3

// Parse reads a kernel .config (or a config fragment) from r. Lines that
// are neither options nor comments are counted in BadLines and skipped:
// a hand-edited config with a stray line still tells what it enables. It
// fails only when r cannot be read or holds no option at all.
func Parse(r io.Reader, source string) (*Config, error) {
	c := newConfig(source)
	n, err := c.parse(r, source)
	if err != nil {
		return nil, fmt.Errorf("read kernel config %s: %w", source, err)
	}
	if n == 0 {
		if c.BadLines > 0 {
			return nil, fmt.Errorf("%s is not a kernel config: none of its %d non-comment lines is a CONFIG_ option", source, c.BadLines)
		}
		return nil, fmt.Errorf("%s has no CONFIG_ options: give a kernel .config, a config.gz, a kernel image built with IKCONFIG or a Kata fragment directory", source)
	}
	if c.Arch == "" {
		c.Arch = archFromValues(c)
	}
	return c, nil
}

func newConfig(source string) *Config {
	return &Config{Values: map[string]string{}, Source: source, Origin: map[string]string{}, Implied: map[string]string{}}
}

// parse merges the lines of r into c, later lines winning, and returns how
// many option lines (set or unset) it read. origin names the file in
// Origin and in warnings.
func (c *Config) parse(r io.Reader, origin string) (int, error) {
	sc := bufio.NewScanner(r)
	// Kconfig string values can be long (command lines, key lists).
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	options, lineNo := 0, 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if m := unsetLine.FindStringSubmatch(line); m != nil {
			delete(c.Values, m[1])
			c.Origin[m[1]] = origin
			options++
			continue
		}
		if strings.HasPrefix(line, "#") {
			if m := headerLine.FindStringSubmatch(line); m != nil && c.Version == "" {
				c.Version = m[1]
			}
			continue
		}
		m := setLine.FindStringSubmatch(line)
		if m == nil || !validValue(m[2]) {
			c.badLine(origin, lineNo, line)
			continue
		}
		options++
		c.Origin[m[1]] = origin
		if m[2] == "n" {
			delete(c.Values, m[1])
			continue
		}
		c.Values[m[1]] = m[2]
	}
	return options, sc.Err()
}

func (c *Config) badLine(origin string, lineNo int, line string) {
	c.BadLines++
	if c.BadLines <= maxBadLinesQuoted {
		c.Warnings = append(c.Warnings, fmt.Sprintf("%s:%d: line not understood, skipped: %q", origin, lineNo, excerpt.Clip(line, maxQuoteLen)))
	}
}

// validValue accepts what Kconfig writes: y, m, n, a number, or a double
// quoted string.
func validValue(v string) bool {
	if plainValue.MatchString(v) {
		return true
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return false
	}
	body := v[1 : len(v)-1]
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\\':
			if i+1 == len(body) {
				return false // the backslash escapes the closing quote
			}
			i++
		case '"':
			return false
		}
	}
	return true
}

// Summary returns one line about the bad lines, "" when there were none.
func (c *Config) Summary() string {
	if c.BadLines == 0 {
		return ""
	}
	return fmt.Sprintf("%d line(s) in %s were not understood and skipped", c.BadLines, c.Source)
}

// archFromValues tells the Kata arch name from the arch options a full
// .config always carries.
func archFromValues(c *Config) string {
	switch {
	case c.On("X86_64"):
		return "x86_64"
	case c.On("ARM64"):
		return "arm64"
	case c.On("S390"):
		return "s390"
	case c.On("PPC64"), c.On("PPC"):
		return "powerpc"
	case c.On("RISCV"):
		return "riscv"
	}
	return ""
}

// maxQuoteLen bounds a line quoted in a message about bad input.
const maxQuoteLen = 60

// looksLikeText reports whether data can be a config: no NUL byte in its
// first 64 KiB.
func looksLikeText(data []byte) bool {
	head := data
	if len(head) > 64*1024 {
		head = head[:64*1024]
	}
	return bytes.IndexByte(head, 0) < 0
}
