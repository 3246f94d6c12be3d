package crjob

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadLogTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dump.log")
	log := strings.Repeat("(00.000001) a line before\n", 100) + "(00.2) Error (criu/x.c:1): the cause\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := readLogTail(p, int64(len(log)))
	if err != nil || l.Text != log || l.Truncated {
		t.Fatalf("whole log: %v, truncated %v", err, l.Truncated)
	}
	l, err = readLogTail(p, 64)
	if err != nil || len(l.Text) != 64 || !l.Truncated || !strings.HasSuffix(l.Text, "the cause\n") {
		t.Fatalf("tail: %q %v, truncated %v", l.Text, err, l.Truncated)
	}
	if _, err := readLogTail(filepath.Dir(p), 64); err == nil {
		t.Error("a directory was read as a log")
	}
}
