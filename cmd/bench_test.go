package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/guestimage"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/vm"
)

// The targets make bench checks, each a ratio against a floor measured in
// the same run (README, Performance).
const (
	targetDowntime   = 1.2  // downtime / (raw dump + raw restore)
	targetEndToEnd   = 1.3  // end to end / (2 bare boots + raw dump + raw restore)
	targetRestore    = 1.02 // kata-cr restore / raw restore
	targetPreDumpHit = 0.25 // final freeze with --pre-dump 2 / a plain dump's freeze
)

// checkpointJSON runs kata-cr checkpoint with args and returns its report;
// the checkpoint must succeed.
func checkpointJSON(b *testing.B, args ...string) *reports.Report {
	b.Helper()
	args = append([]string{"checkpoint", "-o", "json", "--kernel-version", "6.1", "--timeout", "10m",
		"--images-dir", filepath.Join(b.TempDir(), "images")}, args...)
	code, stdout, stderr := runKataCR(args...)
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		b.Fatalf("kata-cr %s: exit %d, no JSON report: %v\nstderr: %s", strings.Join(args, " "), code, err, stderr)
	}
	if c := r.Checkpoint; code != ExitOK || c == nil || c.Timing == nil {
		b.Fatalf("kata-cr %s: exit %d: %+v", strings.Join(args, " "), code, c)
	}
	return &r
}

// bareBoot boots the guest kernel with a trivial initramfs that powers off
// at once, under accel: the floor of a boot.
func bareBoot(b *testing.B, accel string) float64 {
	b.Helper()
	k := needGuest(b, "6.1")
	bare, err := guestimage.BuildBare("", "")
	if err != nil {
		b.Fatal(err)
	}
	d, err := vm.BareBoot(context.Background(), vm.BootSpec{Kernel: k.Image, Initrd: bare, Accel: vm.Accel{Name: accel}}, 2*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	return d.Seconds()
}

// ratioLine is one line of make bench's output: a number, its floor, the
// ratio and the target.
func ratioLine(what string, got, floor float64, floorWhat string, target float64) string {
	ratio := got / floor
	verdict := "met"
	if ratio > target {
		verdict = fmt.Sprintf("MISSED by %.0f%%", (ratio/target-1)*100)
	}
	return fmt.Sprintf("%s %.2fs / %s %.2fs = %.2fx (target <= %.2fx: %s)", what, got, floorWhat, floor, ratio, target, verdict)
}

// BenchmarkCheckpointCounter checkpoints the counter with a restore in a
// fresh guest (--overlap as kata-cr decides), booted and started from VM
// templates (--vm-template), and reports its freeze,
// downtime and end-to-end time next to their floors from the same
// iteration: a raw `criu dump` + `criu restore` of the same workload with
// the same options in an already booted guest (--bench, which also times
// kata-cr's restore there next to raw CRIU's), and two bare boots of the
// same kernel.
func BenchmarkCheckpointCounter(b *testing.B) {
	needGuest(b, "6.1")
	var freeze, down, e2e, rawDump, rawRestore, kcRestore, bRestore, bare, tplDown, tplE2E float64
	n := 0
	// The guests started from a VM template come from one saved here,
	// before the iterations.
	checkpointJSON(b, "counter", "--auto-fix", "--vm-template")
	for b.Loop() {
		r := checkpointJSON(b, "counter", "--auto-fix")
		c := r.Checkpoint
		if !c.Verified || c.Timing.DowntimeSeconds <= 0 {
			b.Fatalf("not verified (%s) or no downtime: %+v", c.Error, c.Timing)
		}
		tc := checkpointJSON(b, "counter", "--auto-fix", "--vm-template").Checkpoint
		if !tc.Verified {
			b.Fatalf("--vm-template: not verified: %s", tc.Error)
		}
		rb := checkpointJSON(b, "counter", "--auto-fix", "--no-restore", "--bench")
		bn := rb.Checkpoint.Bench
		if bn == nil {
			b.Fatalf("no benchmark in the report: %+v", guestFindings(rb)["checkpoint.bench"])
		}
		bb := bareBoot(b, r.Target.Accelerator) + bareBoot(b, r.Target.Accelerator)
		b.Logf("iteration %d: freeze %.2fs, downtime %.2fs, end to end %.2fs (overlap %v: %s); from VM templates: downtime %.2fs, end to end %.2fs; raw dump %.2fs, raw restore %.2fs, kata-cr restore %.2fs; two bare boots %.2fs",
			n+1, c.Timing.FreezeSeconds, c.Timing.DowntimeSeconds, c.Timing.EndToEndSeconds, c.Timing.Overlap, c.Timing.OverlapReason,
			tc.Timing.DowntimeSeconds, tc.Timing.EndToEndSeconds, bn.RawDumpSeconds, bn.RawRestoreSeconds, bn.KataCRRestoreSeconds, bb)
		tplDown += tc.Timing.DowntimeSeconds
		tplE2E += tc.Timing.EndToEndSeconds
		freeze += c.Timing.FreezeSeconds
		down += c.Timing.DowntimeSeconds
		e2e += c.Timing.EndToEndSeconds
		rawDump += bn.RawDumpSeconds
		rawRestore += bn.RawRestoreSeconds
		kcRestore += bn.KataCRRestoreSeconds
		bRestore += c.RestoreSeconds
		bare += bb
		n++
	}
	f := float64(n)
	freeze, down, e2e, rawDump, rawRestore, kcRestore, bRestore, bare = freeze/f, down/f, e2e/f, rawDump/f, rawRestore/f, kcRestore/f, bRestore/f, bare/f
	tplDown, tplE2E = tplDown/f, tplE2E/f
	b.ReportMetric(freeze, "freeze-s")
	b.ReportMetric(down, "downtime-s")
	b.ReportMetric(e2e, "end-to-end-s")
	b.ReportMetric(rawDump, "criu-dump-s")
	b.ReportMetric(rawRestore, "criu-restore-s")
	b.ReportMetric(kcRestore, "katacr-restore-s")
	b.ReportMetric(down/(rawDump+rawRestore), "x-downtime")
	b.ReportMetric(e2e/(bare+rawDump+rawRestore), "x-end-to-end")
	b.ReportMetric(tplDown/(rawDump+rawRestore), "x-downtime-template")
	b.ReportMetric(tplE2E/(bare+rawDump+rawRestore), "x-end-to-end-template")
	b.ReportMetric(kcRestore/rawRestore, "x-restore")
	b.ReportMetric(bRestore/rawRestore, "x-restore-guest-b")
	b.Logf("%s", ratioLine("downtime", down, rawDump+rawRestore, "raw dump + raw restore", targetDowntime))
	b.Logf("%s", ratioLine("end to end", e2e, bare+rawDump+rawRestore, "2 bare boots + raw dump + raw restore", targetEndToEnd))
	b.Logf("%s", ratioLine("with --vm-template: downtime", tplDown, rawDump+rawRestore, "raw dump + raw restore", targetDowntime))
	b.Logf("%s", ratioLine("with --vm-template: end to end", tplE2E, bare+rawDump+rawRestore, "2 bare boots + raw dump + raw restore", targetEndToEnd))
	b.Logf("%s", ratioLine("restore", kcRestore, rawRestore, "raw restore", targetRestore))
	// The restore that counts, in fresh guest B, next to the same raw
	// restore (in guest A, after the dumps).
	b.Logf("%s", ratioLine("restore in guest B", bRestore, rawRestore, "raw restore", targetRestore))
}

// BenchmarkCheckpointOverlap checkpoints the counter with --overlap off and
// on in each iteration: whether booting guest B during the dump helps on
// this machine (it decides --overlap auto).
func BenchmarkCheckpointOverlap(b *testing.B) {
	needGuest(b, "6.1")
	var down, e2e [2]float64
	n := 0
	for b.Loop() {
		for i, mode := range []string{overlapOff, overlapOn} {
			c := checkpointJSON(b, "counter", "--auto-fix", "--overlap", mode).Checkpoint
			if !c.Verified {
				b.Fatalf("--overlap %s: not verified: %s", mode, c.Error)
			}
			down[i] += c.Timing.DowntimeSeconds
			e2e[i] += c.Timing.EndToEndSeconds
			b.Logf("--overlap %s: freeze %.2fs, downtime %.2fs, end to end %.2fs", mode, c.Timing.FreezeSeconds, c.Timing.DowntimeSeconds, c.Timing.EndToEndSeconds)
		}
		n++
	}
	b.ReportMetric(down[1]/down[0], "x-downtime-on/off")
	b.ReportMetric(e2e[1]/e2e[0], "x-end-to-end-on/off")
	b.Logf("--overlap on / off: downtime %.2fs / %.2fs = %.2fx, end to end %.2fs / %.2fs = %.2fx",
		down[1]/float64(n), down[0]/float64(n), down[1]/down[0], e2e[1]/float64(n), e2e[0]/float64(n), e2e[1]/e2e[0])
}

// BenchmarkPreDumpHeap dumps a 256 MiB heap that keeps rewriting part of
// itself, plainly and after two pre-dumps, and reports the final dump's
// freeze with --pre-dump 2 against the plain dump's.
func BenchmarkPreDumpHeap(b *testing.B) {
	needGuest(b, "6.1")
	var plain, pre float64
	n := 0
	for b.Loop() {
		n++
		p := checkpointJSON(b, "heap-256m", "--auto-fix", "--no-restore").Checkpoint.Timing
		q := checkpointJSON(b, "heap-256m", "--auto-fix", "--no-restore", "--pre-dump", "2").Checkpoint.Timing
		if len(q.PreDumps) != 2 {
			b.Fatalf("%d pre-dumps ran, want 2", len(q.PreDumps))
		}
		b.Logf("plain dump: freeze %.2fs, %d pages; --pre-dump 2: pre-dumps %+v, final freeze %.2fs, %d pages written, %d unchanged",
			p.FreezeSeconds, p.PagesWritten, q.PreDumps, q.FreezeSeconds, q.PagesWritten, q.PagesSkippedParent)
		plain += p.FreezeSeconds
		pre += q.FreezeSeconds
	}
	b.ReportMetric(pre/plain, "x-freeze-predump")
	b.Logf("%s", ratioLine("final freeze with --pre-dump 2", pre/float64(n), plain/float64(n), "a plain dump's freeze", targetPreDumpHit))
}
