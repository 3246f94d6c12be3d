package cmd

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

func TestDecideOverlap(t *testing.T) {
	tcg, kvm := vm.Accel{Name: vm.AccelTCG}, vm.Accel{Name: vm.AccelKVM}
	tests := []struct {
		want      string
		accel     vm.Accel
		noRestore bool
		cpus      int
		on        bool
	}{
		{overlapAuto, kvm, false, 2, true},
		{overlapAuto, tcg, false, 1, false},
		{overlapAuto, tcg, false, overlapCPUs, true},
		{overlapOn, tcg, false, 1, true},
		{overlapOff, kvm, false, 8, false},
		{overlapOn, kvm, true, 8, false},
	}
	for _, tc := range tests {
		on, why := decideOverlap(tc.want, tc.accel, tc.noRestore, tc.cpus)
		if on != tc.on || why == "" {
			t.Errorf("decideOverlap(%s, %s, no-restore %v, %d CPUs) = %v %q, want %v with a reason", tc.want, tc.accel.Name, tc.noRestore, tc.cpus, on, why, tc.on)
		}
	}
}

// checkTiming checks a checkpoint's timings: present, in order (the freeze
// within the downtime, the downtime within the end-to-end time), the
// profile's stages, and preDumps pre-dumps.
func checkTiming(t *testing.T, c *reports.Checkpoint, preDumps int) {
	t.Helper()
	tm := c.Timing
	if tm == nil {
		t.Fatal("no timing in the report")
	}
	t.Logf("timing: %s", tm.Line())
	if !tm.Consistent() {
		t.Errorf("timing %+v: want 0 < freeze <= downtime <= end to end", tm)
	}
	if c.RestoreRan && (tm.DowntimeSeconds <= 0 || tm.EndToEndSeconds <= 0) {
		t.Errorf("restored, but downtime %v and end to end %v", tm.DowntimeSeconds, tm.EndToEndSeconds)
	}
	if tm.SavedSeconds <= 0 || (tm.EndToEndSeconds > 0 && tm.SavedSeconds > tm.EndToEndSeconds) {
		t.Errorf("saved at %vs, end to end %vs", tm.SavedSeconds, tm.EndToEndSeconds)
	}
	stages := map[string]bool{}
	for _, s := range tm.Stages {
		stages[s.Guest+" "+s.Stage] = true
	}
	want := []string{"A freeze"}
	if c.RestoreRan {
		want = append(want, "B restored")
	}
	for _, w := range want {
		if !stages[w] {
			t.Errorf("profile lacks stage %q: %+v", w, tm.Stages)
		}
	}
	if len(tm.PreDumps) != preDumps {
		t.Errorf("%d pre-dumps ran, want %d (refusals %+v)", len(tm.PreDumps), preDumps, c.Refusals)
	}
	if preDumps > 0 && tm.PagesSkippedParent == 0 {
		t.Errorf("the final dump skipped no page of its parent: it did not use the pre-dumps' images")
	}
}

// TestCheckpointOverlapPreDump: guest B boots while guest A checks and
// dumps (--overlap on), the counter is pre-dumped twice and the final dump
// writes only what changed; the checkpoint on the host holds the whole
// chain, checksummed, and the restored counter carries on.
func TestCheckpointOverlapPreDump(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	code, r := runCheckpointVM(t, "checkpoint", "counter", "--auto-fix", "--overlap", "on", "--pre-dump", "2", "--images-dir", dir)
	c := r.Checkpoint
	if code != ExitOK || !c.Verified {
		t.Fatalf("exit %d, verified %v: %s %s (refusals %+v)", code, c.Verified, c.Verification, c.Error, c.Refusals)
	}
	if dumped, restored := counters(t, c); restored < dumped {
		t.Errorf("counter %d at the dump, %d after the restore", dumped, restored)
	}
	checkTiming(t, c, 2)
	if !c.Timing.Overlap {
		t.Errorf("overlap %v (%s), want on", c.Timing.Overlap, c.Timing.OverlapReason)
	}
	set, err := images.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.VerifyFiles(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pre-dump-1/pages-1.img", "pre-dump-2/pagemap-1.img", "pagemap-1.img"} {
		found := false
		for _, f := range set.Manifest.Files {
			found = found || f.Name == want
		}
		if !found {
			t.Errorf("the checkpoint lacks %s", want)
		}
	}
}

// TestStopwatch: the downtime runs from guest A's freeze to guest B's
// restored, the end-to-end time from the start to B's restored, and the
// profile keeps every progress stage of both guests in order.
func TestStopwatch(t *testing.T) {
	sw := newStopwatch()
	step := func(guest, stage string) {
		time.Sleep(5 * time.Millisecond)
		sw.event(guest, agentapi.Event{Kind: agentapi.EventProgress, Stage: stage})
	}
	step("A", "checks")
	step("B", agentapi.StageFreeze) // B never freezes: not the downtime's start
	step("A", agentapi.StageFreeze)
	sw.event("A", agentapi.Event{Kind: agentapi.EventLog, Stage: "ignored"})
	sw.markSaved()
	step("B", agentapi.StageRestored)
	var tm reports.Timing
	tm.FreezeSeconds = 0.001
	sw.fill(&tm)
	if !tm.Consistent() || tm.DowntimeSeconds <= 0 || tm.SavedSeconds <= 0 || tm.SavedSeconds > tm.EndToEndSeconds {
		t.Errorf("timing %+v: want freeze <= downtime <= end to end, saved before the end", tm)
	}
	if tm.DowntimeSeconds >= tm.EndToEndSeconds-0.01 {
		t.Errorf("downtime %v counts from before A's freeze (end to end %v)", tm.DowntimeSeconds, tm.EndToEndSeconds)
	}
	var got []string
	for _, s := range tm.Stages {
		got = append(got, s.Guest+" "+s.Stage)
	}
	if want := []string{"A checks", "B freeze", "A freeze", "B restored"}; !slices.Equal(got, want) {
		t.Errorf("stages %q, want %q", got, want)
	}
	// Without a restore: no downtime, no end to end.
	sw = newStopwatch()
	sw.event("A", agentapi.Event{Kind: agentapi.EventProgress, Stage: agentapi.StageFreeze})
	tm = reports.Timing{FreezeSeconds: 0.5}
	sw.fill(&tm)
	if tm.DowntimeSeconds != 0 || tm.EndToEndSeconds != 0 || !tm.Consistent() {
		t.Errorf("no restore: timing %+v", tm)
	}
}
