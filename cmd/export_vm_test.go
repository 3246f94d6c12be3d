package cmd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/images"
)

// checkpointctlBin builds the checkpointctl pinned in go.mod (a tool
// dependency) and returns its path.
func checkpointctlBin(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go not found on PATH: the test builds checkpointctl, pinned in go.mod, with it")
	}
	bin := filepath.Join(t.TempDir(), "checkpointctl")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/checkpoint-restore/checkpointctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go build checkpointctl: %v\n%s", err, out)
	}
	return bin
}

// TestCheckpointExportImport checkpoints the counter with --export, lets
// the real checkpointctl read the archive (show, and inspect --ps-tree
// --stats must list the dumped processes and CRIU's statistics as the
// images record them), then has kata-cr restore refuse a copy with one
// flipped byte in a pages image and restore the intact archive in a fresh
// guest, where the counter carries on.
func TestCheckpointExportImport(t *testing.T) {
	needGuest(t, "6.1")
	ctl := checkpointctlBin(t)
	dir := filepath.Join(t.TempDir(), "images")
	tarPath := filepath.Join(t.TempDir(), "counter.tar")
	code, r := runCheckpointVM(t, "checkpoint", "counter", "--auto-fix", "--no-restore", "--images-dir", dir, "--export", tarPath)
	c := r.Checkpoint
	if code != ExitOK || !c.DumpOK {
		t.Fatalf("exit %d, dump %v: %s", code, c.DumpOK, c.Error)
	}
	if c.Archive != tarPath || guestFindings(r)[exportFindingID].Status != "pass" {
		t.Fatalf("archive %q, finding %+v: want %s exported", c.Archive, guestFindings(r)[exportFindingID], tarPath)
	}
	fi, err := os.Stat(tarPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the archive: %v, want a 0600 file", err)
	}

	tree, err := criu.ReadPstree(dir)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := criu.ReadDumpStats(dir)
	if err != nil {
		t.Fatal(err)
	}
	show := runCheckpointctl(t, ctl, "show", tarPath)
	for _, want := range []string{"counter", "kata-cr", "CHKPT SIZE"} {
		if !strings.Contains(show, want) {
			t.Errorf("checkpointctl show does not list %q", want)
		}
	}
	inspect := runCheckpointctl(t, ctl, "inspect", "--ps-tree", "--stats", tarPath)
	wants := []string{
		"Process tree", "CRIU dump statistics",
		fmt.Sprintf("Pages scanned: %d", stats.PagesScanned),
		fmt.Sprintf("Pages written: %d", stats.PagesWritten),
	}
	for _, p := range tree {
		// checkpointctl marks a zombie (the counter's last sleep, when
		// the dump caught it exited and not yet reaped) "(Dead)".
		id := strconv.Itoa(p.PID)
		if p.Zombie {
			id += " (Dead)"
		}
		wants = append(wants, fmt.Sprintf("[%s]  %s", id, p.Comm))
	}
	for _, want := range wants {
		if !strings.Contains(inspect, want) {
			t.Errorf("checkpointctl inspect --ps-tree --stats does not say %q", want)
		}
	}
	t.Logf("dumped tree %+v; stats: %d pages scanned, %d written", tree, stats.PagesScanned, stats.PagesWritten)

	// One flipped byte in a pages image: refused before any guest boots.
	set, err := images.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pages string
	for _, f := range set.Manifest.Files {
		if strings.HasPrefix(f.Name, "pages-") && f.Size > 0 {
			pages = f.Name
			break
		}
	}
	if pages == "" {
		t.Fatal("the checkpoint has no pages image")
	}
	content, err := os.ReadFile(set.Path(pages))
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.tar")
	data, err := os.ReadFile(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, data, 0o600); err != nil {
		t.Fatal(err)
	}
	flipInArchive(t, tampered, "checkpoint/"+pages, content)
	start := time.Now()
	code, _, stderr := runKataCR("restore", "--kernel-version", "6.1", "--import", tampered)
	if code != ExitToolError || !strings.Contains(stderr, images.ReasonChecksum) || !strings.Contains(stderr, "checkpoint/"+pages) ||
		strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("restore --import of the tampered archive: exit %d, %q; want %d, one line naming checkpoint/%s and %s",
			code, stderr, ExitToolError, pages, images.ReasonChecksum)
	}
	t.Logf("tampered archive refused in %s: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr))

	// The intact archive restores in a fresh guest, and the counter
	// carries on from the dump.
	code, r = runCheckpointVM(t, "restore", "--import", tarPath)
	c = r.Checkpoint
	if code != ExitOK || !c.Verified || c.Archive != tarPath {
		t.Fatalf("restore --import: exit %d, verified %v, archive %q: %s %s", code, c.Verified, c.Archive, c.Verification, c.Error)
	}
	if dumped, restored := counters(t, c); restored < dumped {
		t.Errorf("counter %d at the dump, %d after the restore", dumped, restored)
	}
	if _, err := os.Stat(c.ImagesDir); !os.IsNotExist(err) {
		t.Errorf("the extracted images %s are still there: %v", c.ImagesDir, err)
	}
}

func runCheckpointctl(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	t.Logf("checkpointctl %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("checkpointctl %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
