package reports

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// terminalSafe returns a copy of r in which no string can drive a terminal:
// control characters other than tab and newline, and bidirectional
// overrides (an escape sequence in a
// CRIU log line, a workload's output, a file name) are shown as \xNN or
// \u{NNNN}. The text and Markdown renderers print the copy; JSON escapes
// control characters itself.
func terminalSafe(r *Report) *Report {
	data, err := json.Marshal(r)
	if err != nil {
		return r
	}
	var out Report
	if err := json.Unmarshal(data, &out); err != nil {
		return r
	}
	cleanValue(reflect.ValueOf(&out).Elem())
	return &out
}

func cleanValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(cleanString(v.String()))
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			cleanValue(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				cleanValue(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			cleanValue(v.Index(i))
		}
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.String || v.Type().Key().Kind() != reflect.String {
			return
		}
		for _, k := range v.MapKeys() {
			v.SetMapIndex(k, reflect.ValueOf(cleanString(v.MapIndex(k).String())).Convert(v.Type().Elem()))
		}
	}
}

// TerminalText returns s with its control characters (but tab and
// newline) and bidirectional overrides shown as text, for a line printed
// on a terminal outside a report.
func TerminalText(s string) string { return cleanString(s) }

// cleanString replaces the control characters of s, but tab and newline.
func cleanString(s string) string {
	if !strings.ContainsFunc(s, isUnsafe) {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		switch {
		case !isUnsafe(c):
			b.WriteRune(c)
		case c < 0x100:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			fmt.Fprintf(&b, `\u{%04x}`, c)
		}
	}
	return b.String()
}

func isUnsafe(c rune) bool {
	return c != '\n' && c != '\t' && (unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c))
}
