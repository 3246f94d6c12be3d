package container

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestOutputTail: what an init without a terminal writes to stdout and
// stderr can be read after it died, its mount namespace gone.
func TestOutputTail(t *testing.T) {
	w := Command([]string{"sh", "-c", "echo starting; echo 'config: no such file' >&2; exit 3"})
	f := newFixture(t, w)
	c := f.start(t, Spec{Args: w.Args, Setsid: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Wait(ctx)
	if err != nil || st.Code != 3 {
		t.Fatalf("exit %v %v, want status 3", st, err)
	}
	if got, want := c.OutputTail(10), []string{"starting", "config: no such file"}; !slices.Equal(got, want) {
		t.Errorf("OutputTail(10) = %q, want %q", got, want)
	}
	if got := c.OutputTail(1); !slices.Equal(got, []string{"config: no such file"}) {
		t.Errorf("OutputTail(1) = %q", got)
	}
	if err := c.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := c.OutputTail(10); got != nil {
		t.Errorf("after Kill: %q, want nothing", got)
	}
}
