package excerpt

import (
	"slices"
	"testing"
)

func TestClip(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a longer line", 8, "a longer..."},
		{"", 0, ""},
		{"x", 0, "..."},
		// "é" is two bytes: the cut moves back rather than split it.
		{"caféine", 4, "caf..."},
		{"caféine", 5, "café..."},
		{"日本語", 4, "日..."},
	}
	for _, tt := range tests {
		if got := Clip(tt.s, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"one":             "one",
		"one\ntwo":        "one",
		"\nafter a blank": "",
		"trailing\n":      "trailing",
	} {
		if got := FirstLine(in); got != want {
			t.Errorf("FirstLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLast(t *testing.T) {
	tests := []struct {
		l    []int
		n    int
		want []int
	}{
		{nil, 3, nil},
		{[]int{1, 2}, 3, []int{1, 2}},
		{[]int{1, 2, 3}, 3, []int{1, 2, 3}},
		{[]int{1, 2, 3, 4, 5}, 2, []int{4, 5}},
		{[]int{1, 2}, 0, []int{}},
	}
	for _, tt := range tests {
		if got := Last(tt.l, tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("Last(%v, %d) = %v, want %v", tt.l, tt.n, got, tt.want)
		}
	}
}

func TestTailLines(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"only\n", 3, "only"},
		{"\n\na\nb\nc\nd\n\n", 3, "b | c | d"},
		{"a\nb", 5, "a | b"},
	}
	for _, tt := range tests {
		if got := TailLines(tt.s, tt.n); got != tt.want {
			t.Errorf("TailLines(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
