// Package tomlfile holds what kata-cr's TOML input files (the gate's
// matrix, a pod description) share: the one-line error that names the
// file, the line and the key, and the locator that finds a key's line.
package tomlfile

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is a mistake in an input file: one line naming the file, the line
// and the key.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *Error) Error() string {
	at := e.File
	if e.Line > 0 {
		at = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return at + ": " + e.Msg
	}
	return at + ": " + e.Key + ": " + e.Msg
}

// typeError is how the TOML decoder words a value of the wrong type.
var typeError = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// DecodeError turns an error of toml.Decode on the file name into an
// *Error at the line the decoder names.
func DecodeError(name string, err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
	}
	// A value of the wrong type: the decoder says where in its text.
	if m := typeError.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Key: m[2], Msg: m[3]}
	}
	return &Error{File: name, Msg: err.Error()}
}

// Keys are the keys a file's tables may hold, for the message about an
// unknown key.
type Keys struct {
	// Known lists the keys of each table ("" is the top level), as the
	// message words them.
	Known map[string]string
	// Tables are the tables written [table]; the others are [[table]]s.
	Tables map[string]bool
}

// Undecoded is the error for the first (in the file) of the keys the
// decoder did not place, nil when there are none.
func (l *Locator) Undecoded(name string, keys []toml.Key, k Keys) error {
	if len(keys) == 0 {
		return nil
	}
	best, bestLine := keys[0], 0
	for _, key := range keys {
		table, last := "", key[len(key)-1]
		if len(key) > 1 {
			table = strings.Join(key[:len(key)-1], ".")
		}
		if n := l.Line(table, -2, last); n > 0 && (bestLine == 0 || n < bestLine) {
			best, bestLine = key, n
		}
	}
	parent := ""
	if len(best) > 1 {
		parent = best[0]
	}
	known, ok := k.Known[parent]
	if !ok || len(best) > 2 {
		return &Error{File: name, Line: bestLine, Key: best.String(), Msg: "unknown key"}
	}
	where := "at the top"
	if parent != "" {
		where = "in [[" + parent + "]]"
		if k.Tables[parent] {
			where = "in [" + parent + "]"
		}
	}
	return &Error{File: name, Line: bestLine, Key: best.String(), Msg: fmt.Sprintf("unknown key: the keys %s are %s", where, known)}
}
