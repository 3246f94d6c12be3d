package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/kata-cr/kata-cr/internal/excerpt"
)

// Exit codes of kata-cr, as documented in the README.
const (
	ExitOK          = 0 // nothing required failed
	ExitToolError   = 1 // kata-cr could not do its work (bad input, a tool missing)
	ExitUsage       = 2 // the command line is wrong
	ExitCheckFailed = 3 // a required check failed, or a checkpoint did not succeed
)

// usageError marks errors in the command line.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usagef returns a usage error.
func usagef(format string, a ...any) error {
	return usageError{fmt.Errorf(format, a...)}
}

// errCheckFailed is returned by a command whose report has a failed
// required finding; the report itself has already been printed.
var errCheckFailed = errors.New("a required check failed")

// exitCode maps an error from a command to the process exit code and
// prints it as one line.
func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errCheckFailed):
		return ExitCheckFailed
	}
	var u usageError
	msg := strings.TrimSpace(err.Error())
	if errors.As(err, &u) || isCobraUsage(msg) {
		fmt.Fprintf(stderr, "kata-cr: %s (see kata-cr --help)\n", excerpt.FirstLine(msg))
		return ExitUsage
	}
	fmt.Fprintf(stderr, "kata-cr: %s\n", excerpt.FirstLine(msg))
	return ExitToolError
}

// isCobraUsage recognises the errors cobra and pflag return for a bad
// command line that did not come through the root's flag error function
// (arguments, subcommands, a command run on its own). They start with these
// words; matching them anywhere would take a tool error that ends in
// EINVAL's "invalid argument" for a usage error.
func isCobraUsage(msg string) bool {
	for _, p := range []string{"unknown command ", "unknown flag: ", "unknown shorthand flag: ",
		"flag needs an argument: ", `invalid argument "`, "accepts ", "requires at least ",
		"required flag", "if any flags in the group", "at least one of the flags in the group"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
