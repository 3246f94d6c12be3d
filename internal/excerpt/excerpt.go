// Package excerpt cuts text down to what a message quotes: a string
// clipped to a length, its first line, its last lines.
package excerpt

import "strings"

// Clip returns s when it is at most n bytes long, else its first n bytes
// (fewer rather than split a UTF-8 sequence) followed by "...".
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}

// FirstLine returns s up to its first newline.
func FirstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// Last returns the last n elements of l, or l when it has no more.
func Last[T any](l []T, n int) []T {
	if len(l) > n {
		return l[len(l)-max(n, 0):]
	}
	return l
}

// TailLines returns the last n lines of s, without the blank space around
// s, on one line: joined with " | ", for the end of an error message that
// quotes a command's output.
func TailLines(s string, n int) string {
	return strings.Join(Last(strings.Split(strings.TrimSpace(s), "\n"), n), " | ")
}
