package cmd

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressBar: on a terminal the copy shows a bar that ends at 100%
// with a newline; elsewhere nothing.
func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	p := &progress{w: &b, on: true, term: true, start: time.Now()}
	r := &progressReader{r: strings.NewReader(strings.Repeat("x", 3000)), total: 3000, what: "copying the images", p: p}
	buf := make([]byte, 1000)
	for {
		if _, err := r.Read(buf); err != nil {
			break
		}
	}
	out := b.String()
	if !strings.Contains(out, "copying the images [") || !strings.Contains(out, "100% 2.9 KiB of 2.9 KiB\n") {
		t.Errorf("bar output %q", out)
	}
	b.Reset()
	p.term = false
	p.bar("copying the images", 10, 100)
	if b.Len() != 0 {
		t.Errorf("a bar drawn without a terminal: %q", b.String())
	}
}
