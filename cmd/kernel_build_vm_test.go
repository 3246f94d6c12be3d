package cmd

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kata-cr/kata-cr/corpus"
	"github.com/kata-cr/kata-cr/criulog"
	"github.com/kata-cr/kata-cr/kernel"
	"github.com/kata-cr/kata-cr/kernel/kbuild"
	"github.com/kata-cr/kata-cr/reports"
)

// kataFragmentsFixture is Kata's own fragment tree (kernel/testdata/README
// says from which Kata commit).
var kataFragmentsFixture = filepath.Join("..", "kernel", "testdata", "kata-fragments")

// builtKataKernel returns Kata's guest kernel built from the fixture
// fragments on Debian's linux-source-6.12, with kata-cr's CRIU fragment or
// stock. `make guest-kernels` builds both once per machine; when the cache
// lacks one the test fetches the source and builds it (about 14 minutes
// from scratch on 2 CPUs, a few minutes for the second variant).
func builtKataKernel(t *testing.T, stock bool) *kbuild.Result {
	t.Helper()
	needGuest(t, kernel.DefaultSeries)
	if _, err := os.Stat(filepath.Join(kernel.CacheDir(), "kernel-source", "6.12", "SHA256SUMS")); err != nil {
		out, err := exec.Command(filepath.Join("..", "scripts", "fetch-kernel.sh"), "source", "6.12").CombinedOutput()
		if err != nil {
			t.Fatalf("scripts/fetch-kernel.sh source 6.12: %v\n%s", err, out)
		}
	}
	args := []string{"kernel", "build", "-o", "json", "--fragments", kataFragmentsFixture, "--source", "6.12", "--arch", "x86_64"}
	if stock {
		args = append(args, "--stock")
	}
	code, stdout, stderr := runKataCR(args...)
	if code != ExitOK {
		t.Fatalf("kata-cr %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	var r kbuild.Result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("kata-cr %s: no JSON: %v\n%s", strings.Join(args, " "), err, stdout)
	}
	t.Logf("kernel %s (%s): %s, cache hit %v, built in %.0fs (incremental %v); %s",
		r.Name, r.Release, r.Kernel, r.CacheHit, r.BuildSeconds, r.Incremental, r.VersionNote)
	return &r
}

// doctorOn runs the guest doctor on a built kernel and returns its report.
func doctorOn(t *testing.T, name string, extra ...string) (int, *reports.Report) {
	t.Helper()
	args := append([]string{"doctor", "-o", "json", "--kernel-version", name, "--timeout", "8m"}, extra...)
	code, stdout, stderr := runKataCR(args...)
	var r reports.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("kata-cr %s: exit %d, no JSON report: %v\nstderr: %s", strings.Join(args, " "), code, err, stderr)
	}
	t.Logf("kata-cr %s: exit %d, verdict %q", strings.Join(args, " "), code, r.Verdict)
	return code, &r
}

// failedKernelOptions are the kernel.* findings of r that failed, as
// option names, sorted.
func failedKernelOptions(r *reports.Report) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Status == reports.Fail && strings.HasPrefix(f.ID, "kernel.") {
			out = append(out, strings.TrimPrefix(f.ID, "kernel."))
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestBuiltKataKernelCRIU is issue 11's proof: Kata's kernel built from
// Kata's fragments plus kata-cr's CRIU fragment boots, every required check
// of the guest doctor passes with nothing to load (the options are built
// in, --fix has nothing to do), and the default workload and a TCP server,
// a lock and a pty from the corpus are checkpointed, restored and verified
// on it, raw CRIU agreeing with the prediction.
func TestBuiltKataKernelCRIU(t *testing.T) {
	b := builtKataKernel(t, false)
	cfg, err := kernel.Load(b.Config)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.On("MODULES") {
		t.Errorf("%s has CONFIG_MODULES: Kata's build has no module support", b.Config)
	}

	t.Run("doctor", func(t *testing.T) {
		code, r := doctorOn(t, b.Name, "--fix")
		if code != ExitOK || r.Failed {
			t.Errorf("exit %d (failed %v), want 0: %s", code, r.Failed, r.Verdict)
		}
		if got := failedKernelOptions(r); len(got) != 0 {
			t.Errorf("kernel options failed: %v", got)
		}
		fs := guestFindings(r)
		for _, opt := range []string{"CHECKPOINT_RESTORE", "UNIX_DIAG", "INET_DIAG", "NETLINK_DIAG"} {
			f := fs["kernel."+opt]
			if f.Status != reports.Pass || !strings.Contains(f.Summary, "built in") {
				t.Errorf("kernel.%s: %s %q, want a pass saying built in", opt, f.Status, f.Summary)
			}
		}
		if f := fs["criu.check"]; f.Status != reports.Pass {
			t.Errorf("criu.check: %s %q", f.Status, f.Summary)
		}
		for _, a := range r.Actions {
			t.Errorf("--fix did something on a kernel with everything built in: %s %q (applied %v)", a.Fixer, a.Summary, a.Applied)
		}
	})

	t.Run("default workload", func(t *testing.T) {
		code, r := runCheckpointOn(t, b.Name, "checkpoint", "--auto-fix", "--prove", "--images-dir", filepath.Join(t.TempDir(), "ck"))
		c := r.Checkpoint
		if code != ExitOK || !c.DumpOK || !c.RestoreOK || !c.Verified {
			t.Errorf("exit %d: dump %v restore %v verified %v: %s", code, c.DumpOK, c.RestoreOK, c.Verified, c.Error)
		}
		// Raw CRIU judges the prediction: the plain dump of the workload as
		// started fails on what the preflight named.
		if c.Plain == nil || c.Plain.OK || len(c.Plain.PredictedBy) == 0 {
			t.Errorf("plain dump %+v: want a failure the prediction named", c.Plain)
		} else {
			t.Logf("raw CRIU, plain dump: ok %v, signature %s, predicted by %v", c.Plain.OK, c.Plain.Signature, c.Plain.PredictedBy)
		}
		for _, p := range c.Proofs {
			t.Logf("proof %s without %q: failed %v (%s), confirmed %v", p.Finding, p.Without, p.Failed, p.Signature, p.Confirmed)
		}
		if c.PredictionMatched == nil || !*c.PredictionMatched {
			t.Errorf("prediction_matched %v, want true", c.PredictionMatched)
		}
	})

	t.Run("corpus", func(t *testing.T) {
		only := []string{"tcp-listen", "lock-posix", "pty"}
		args := []string{"corpus", "--kernel-version", b.Name, "--only", strings.Join(only, ","), "-o", "json", "--dir", filepath.Join(t.TempDir(), "corpus")}
		code, stdout, stderr := runKataCR(args...)
		var res corpus.Result
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("kata-cr %s: exit %d, no JSON: %v\nstderr: %s", strings.Join(args, " "), code, err, lastLines(stderr, 20))
		}
		if code != ExitOK {
			t.Errorf("exit %d", code)
		}
		if res.Cell.KernelRelease != b.Release {
			t.Errorf("the corpus ran on %s, want the built %s", res.Cell.KernelRelease, b.Release)
		}
		var names []string
		for _, e := range res.Entries {
			names = append(names, e.Name)
			t.Logf("%s: plain predicted %s (%v), CRIU %s (%s); planned %v predicted %s, CRIU %s; restored %v verified %v; verdict %s; dump %.2fs restore %.2fs",
				e.Name, e.Plain.Predicted, e.Blockers, e.Plain.CRIU, e.Plain.Signature, e.Fix, e.Planned.Predicted, e.Planned.CRIU, e.Restored, e.Verified, e.Verdict, e.DumpSeconds, e.RestoreSeconds)
			if e.Verdict != corpus.VerdictRestored || !e.Restored || !e.Verified || len(e.Disagreements) > 0 || e.Planned.CRIU != "ok" {
				t.Errorf("%s: verdict %s, restored %v, verified %v, disagreements %v, planned CRIU %s: %s",
					e.Name, e.Verdict, e.Restored, e.Verified, e.Disagreements, e.Planned.CRIU, e.Detail)
			}
		}
		slices.Sort(names)
		if want := slices.Sorted(slices.Values(only)); !slices.Equal(names, want) {
			t.Errorf("entries %v, want %v", names, want)
		}
	})
}

// TestBuiltKataKernelStock is the negative control: Kata's kernel built
// from the same fragments without the CRIU fragment boots, and the guest
// doctor fails on exactly the options kata-cr kernel check predicts from
// the fragments, and `criu check` in that guest fails on them too (each
// error line it prints is explained by a signature naming a predicted
// option, and together they name every predicted option CRIU's check
// looks at; what it cannot reach, the live kernel shows).
func TestBuiltKataKernelStock(t *testing.T) {
	b := builtKataKernel(t, true)

	code, stdout, stderr := runKataCR("kernel", "check", "--arch", "x86_64", "-o", "json", kataFragmentsFixture)
	if code != ExitCheckFailed {
		t.Fatalf("kernel check: exit %d: %s", code, stderr)
	}
	var predicted reports.Report
	if err := json.Unmarshal([]byte(stdout), &predicted); err != nil {
		t.Fatal(err)
	}
	want := failedKernelOptions(&predicted)
	t.Logf("kernel check predicts from the fragments: %v", want)

	code, r := doctorOn(t, b.Name)
	if code != ExitCheckFailed || !r.Failed {
		t.Errorf("doctor: exit %d, want %d", code, ExitCheckFailed)
	}
	if got := failedKernelOptions(r); !slices.Equal(got, want) {
		t.Errorf("the guest doctor fails on %v, kernel check predicted %v", got, want)
	}

	f := guestFindings(r)["criu.check"]
	if f.Status != reports.Fail {
		t.Fatalf("criu check on the stock kernel: %s %q, want a failure", f.Status, f.Summary)
	}
	named := map[string]bool{}
	for _, e := range criulog.ExplainLines("criu check", f.Evidence) {
		if !e.Known {
			t.Errorf("criu check line %q is not explained", e.Quote)
			continue
		}
		var opts []string
		sig, _ := criulog.SignatureByID(e.Signature)
		for _, id := range sig.Findings {
			if o, ok := strings.CutPrefix(id, "kernel."); ok && slices.Contains(want, o) {
				opts = append(opts, o)
				named[o] = true
			}
		}
		t.Logf("criu check: %s -> %v (%q)", e.Signature, opts, e.Quote)
		if len(opts) == 0 {
			t.Errorf("criu check fails on %s, which names no predicted option", e.Signature)
		}
	}
	if len(named) == 0 {
		t.Errorf("criu check's failure names none of the predicted options: %v", f.Evidence)
	}
	// CRIU 3.17.1's check stops at the first kerndat failure (the sock diag
	// probe), before it tries kcmp: CHECKPOINT_RESTORE is seen live instead,
	// by the guest's missing /proc/sys/kernel/ns_last_pid (what the kcmp
	// signature names beside the option).
	if ns := guestFindings(r)["system.ns-last-pid"]; ns.Status == reports.Fail {
		named["CHECKPOINT_RESTORE"] = true
	} else {
		t.Errorf("system.ns-last-pid: %s %q, want a failure on a kernel without CHECKPOINT_RESTORE", ns.Status, ns.Summary)
	}
	seen := slices.Sorted(maps.Keys(named))
	t.Logf("options criu check and the live kernel fail on: %v", seen)
	if !slices.Equal(seen, want) {
		t.Errorf("criu check and the live kernel fail on %v, kernel check predicted %v", seen, want)
	}
}
