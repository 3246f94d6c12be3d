package tomlfile

import (
	"strings"
)

// Locator finds the line of a key in a TOML file. The TOML decoder
// says where a value of the wrong type is, but not where a key it
// decoded (or could not place) is written: the Locator reads the file's
// lines for their table headers and keys, enough to point at a line.
type Locator struct {
	keys []locKey
}

type locKey struct {
	table string
	// idx counts the [[table]] headers of one name from 0; -1 for a
	// [table] or the top level.
	idx  int
	key  string
	line int
}

// NewLocator reads the table headers and keys of a file's text.
func NewLocator(data []byte) *Locator {
	l := &Locator{}
	count := map[string]int{}
	table, idx, depth := "", -1, 0
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(stripComment(raw))
		if depth > 0 {
			// Inside a value that spans lines (an array).
			depth += brackets(line)
			continue
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "[["):
			table = unquoteKey(strings.TrimSuffix(strings.TrimPrefix(line, "[["), "]]"))
			idx = count[table]
			count[table]++
			l.keys = append(l.keys, locKey{table: table, idx: idx, line: i + 1})
		case strings.HasPrefix(line, "["):
			table, idx = unquoteKey(strings.TrimSuffix(strings.TrimPrefix(line, "["), "]")), -1
			l.keys = append(l.keys, locKey{table: table, idx: idx, line: i + 1})
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			key := unquoteKey(k)
			// A dotted key (a.b = 1) belongs to a table below this one.
			t := table
			if dot := strings.LastIndex(key, "."); dot > 0 {
				t = join(table, key[:dot])
				key = key[dot+1:]
			}
			l.keys = append(l.keys, locKey{table: t, idx: idx, key: key, line: i + 1})
			depth = brackets(v)
		}
	}
	return l
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// unquoteKey turns a key as written (spaces, quotes, dotted parts) into
// its dotted name.
func unquoteKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// outsideStrings calls f with each rune of s outside a quoted string and
// its byte offset, until f returns false.
func outsideStrings(s string, f func(i int, r rune) bool) {
	var quote rune
	for i, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
		case r == '"' || r == '\'':
			quote = r
		case !f(i, r):
			return
		}
	}
}

// stripComment drops a # comment outside strings.
func stripComment(s string) string {
	end := len(s)
	outsideStrings(s, func(i int, r rune) bool {
		if r == '#' {
			end = i
			return false
		}
		return true
	})
	return s[:end]
}

// brackets counts the array brackets a value opens and does not close,
// outside strings.
func brackets(s string) int {
	n := 0
	outsideStrings(s, func(_ int, r rune) bool {
		switch r {
		case '[', '{':
			n++
		case ']', '}':
			n--
		}
		return true
	})
	return max(n, 0)
}

// Line is the line of key in the idx-th [[table]] (idx -1: the [table]
// or the top level; -2: any of them, the first); key "" is the table's
// header. A key not written in that table (a default) falls back to the
// header, and a table not written at all to 0.
func (l *Locator) Line(table string, idx int, key string) int {
	header := 0
	for _, k := range l.keys {
		if k.table != table || (idx != -2 && k.idx != idx) {
			continue
		}
		if k.key == key {
			return k.line
		}
		if k.key == "" && header == 0 {
			header = k.line
		}
	}
	if header == 0 && table == "" && key != "" {
		// A table of its own at the top level: [name] or [[name]].
		return l.Line(key, -2, "")
	}
	return header
}
