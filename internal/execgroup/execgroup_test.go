package execgroup

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTimeoutKillsGroup: a shell whose child keeps the output pipe open is
// killed with its child when the time limit passes, and the caller gets
// control back at once rather than when the child ends.
func TestTimeoutKillsGroup(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatal("sh not found")
	}
	pidFile := t.TempDir() + "/child.pid"
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	cmd := Command(ctx, "sh", "-c", "sleep 60 & echo $! > "+pidFile+"; wait")
	_, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("a command past its time limit succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s: the child held the caller", took)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background child %d outlived its group's kill", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
