package lru

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestBeyond(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	var paths []string
	for _, f := range []struct {
		name string
		age  time.Duration
	}{{"a", 3 * time.Hour}, {"b", 2 * time.Hour}, {"c", 4 * time.Hour}, {"d", time.Minute}, {"e", 5 * time.Hour}} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-f.age), now.Add(-f.age)); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	paths = append(paths, filepath.Join(dir, "missing"))
	tests := []struct {
		keep  int
		grace time.Duration
		want  []string
	}{
		{2, 0, []string{"a", "c", "e"}},
		{1, 0, []string{"b", "a", "c", "e"}},
		{1, 150 * time.Minute, []string{"a", "c", "e"}},
		{5, 0, nil},
		{0, 0, []string{"d", "b", "a", "c", "e"}},
	}
	for _, tt := range tests {
		var got []string
		for _, p := range Beyond(paths, tt.keep, tt.grace) {
			got = append(got, filepath.Base(p))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Beyond(keep %d, grace %s) = %v, want %v", tt.keep, tt.grace, got, tt.want)
		}
	}
}
