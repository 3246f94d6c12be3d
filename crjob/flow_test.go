package crjob

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kata-cr/kata-cr/checks"
	"github.com/kata-cr/kata-cr/criu"
	"github.com/kata-cr/kata-cr/images"
	"github.com/kata-cr/kata-cr/reports"
	"github.com/kata-cr/kata-cr/runtime/agentapi"
	"github.com/kata-cr/kata-cr/runtime/container"
)

// The flow tests run the checkpoint job's steps without a VM: the
// "container" is this test process (its pid and command line are real, so
// the workload's probes and the process checks read a live /proc), while
// the host, CRIU and the runtime are recording fakes.

type fakeHost struct {
	stages  []string
	results []result
	reports []*reports.Report
	sent    []images.Manifest
	sendErr error
}

func (h *fakeHost) Progress(stage, _ string, _ ...any) { h.stages = append(h.stages, stage) }
func (h *fakeHost) Logf(string, ...any)                {}
func (h *fakeHost) Send(ev agentapi.Event) error {
	if ev.Kind == agentapi.EventReport {
		h.reports = append(h.reports, ev.Report)
	}
	return nil
}
func (h *fakeHost) Result(stage string, v any) error {
	h.results = append(h.results, result{stage, v})
	return nil
}

// result is a structured result a job sent.
type result struct {
	stage string
	v     any
}

func (h *fakeHost) SendImages(m images.Manifest, _ string) (agentapi.ImagesSaved, error) {
	h.sent = append(h.sent, m)
	if h.sendErr != nil {
		return agentapi.ImagesSaved{}, h.sendErr
	}
	return agentapi.ImagesSaved{OK: true, Dir: "/saved"}, nil
}
func (h *fakeHost) ReceiveImages(string) error { return errors.New("no images in this test") }

// self is a Container that is this test process; Kill only records.
type self struct{ killed int }

func (c *self) PID() int      { return os.Getpid() }
func (c *self) Running() bool { return true }
func (c *self) Done() <-chan struct{} {
	// As after the dump killed the tree: the job waits for it before it
	// restores in place.
	ch := make(chan struct{})
	close(ch)
	return ch
}
func (c *self) Kill() error             { c.killed++; return nil }
func (c *self) TTYKey() (string, error) { return "", errors.New("no tty") }
func (c *self) Wait(context.Context) (container.ExitStatus, error) {
	return container.ExitStatus{}, errors.New("still running")
}

type fakeRuntime struct {
	ctr      *self
	startErr error
	starts   int
	adopted  []int
}

func (r *fakeRuntime) PrepareRootfs(rootfs string, _ container.Workload, _ map[string]string) error {
	return os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
}
func (r *fakeRuntime) PrepareSandbox(string, string) (container.SandboxFiles, error) {
	return container.SandboxFiles{}, nil
}
func (r *fakeRuntime) Start(container.Spec) (Container, error) {
	r.starts++
	if r.startErr != nil {
		return nil, r.startErr
	}
	return r.ctr, nil
}
func (r *fakeRuntime) CgroupRoot() string { return "" }
func (r *fakeRuntime) Adopt(pid int, _ string) (Container, error) {
	r.adopted = append(r.adopted, pid)
	return r.ctr, nil
}

type fakeCRIU struct {
	dumpErr    error
	dumps      []criu.DumpOpts
	restores   []criu.RestoreOpts
	restoreErr error
}

func (c *fakeCRIU) Dump(_ context.Context, o criu.DumpOpts) (*criu.DumpResult, error) {
	c.dumps = append(c.dumps, o)
	if c.dumpErr != nil {
		return nil, c.dumpErr
	}
	// No pstree.img is written: the images cannot match the tree.
	return &criu.DumpResult{ImagesDir: o.ImagesDir, Duration: 10 * time.Millisecond, TreeErr: errors.New("not read in this test")}, nil
}

func (c *fakeCRIU) Restore(_ context.Context, o criu.RestoreOpts) (*criu.RestoreResult, error) {
	c.restores = append(c.restores, o)
	if c.restoreErr != nil {
		return nil, c.restoreErr
	}
	return &criu.RestoreResult{PID: os.Getpid(), Duration: 5 * time.Millisecond}, nil
}

func testDeps(t *testing.T, h *fakeHost, rt *fakeRuntime, cr *fakeCRIU) *Deps {
	t.Helper()
	return &Deps{
		Host:    h,
		Guest:   crjobGuest(),
		Runtime: rt,
		CRIU:    cr,
		Root:    t.TempDir(),
		Version: "test",
	}
}

func crjobGuest() Guest {
	return Guest{
		Release: "6.1.0-test", Machine: "x86_64",
		Env: func(context.Context) (*checks.Env, reports.Target) {
			return &checks.Env{ProcRoot: "/proc", SysRoot: "/sys", Root: true}, reports.Target{Kind: "guest", CRIUVersion: "3.17.1"}
		},
	}
}

// selfCommand is this process's own command line: the command workload's
// probes compare the init's command line with it.
func selfCommand(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func onlyReport(t *testing.T, h *fakeHost) *reports.Report {
	t.Helper()
	if len(h.reports) != 1 {
		t.Fatalf("%d reports sent, want 1", len(h.reports))
	}
	return h.reports[0]
}

func finding(r *reports.Report, id string) (reports.Finding, bool) {
	for _, f := range r.Findings {
		if f.ID == id {
			return f, true
		}
	}
	return reports.Finding{}, false
}

// TestCheckpointDumpFails: a failed dump is a result, not an error; the
// images are never sent and the report says the workload still runs.
func TestCheckpointDumpFails(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{dumpErr: &criu.Error{Op: "dump", Err: errors.New("exit status 1")}}
	err := Checkpoint(t.Context(), testDeps(t, h, rt, cr), agentapi.CheckpointOptions{Command: selfCommand(t)}, false)
	if err != nil {
		t.Fatal(err)
	}
	r := onlyReport(t, h)
	cp := r.Checkpoint
	if cp.DumpOK || cp.Stage != "dump" || cp.Error == "" {
		t.Errorf("checkpoint %+v: want a failed dump stage with its error", cp)
	}
	if cp.WorkloadRunning == nil || !*cp.WorkloadRunning {
		t.Errorf("workload_running %v, want true", cp.WorkloadRunning)
	}
	if len(cr.dumps) != 1 || cr.dumps[0].PID != os.Getpid() || cr.dumps[0].ImagesDir == "" {
		t.Errorf("dumps %+v: want one of pid %d into the job's images", cr.dumps, os.Getpid())
	}
	if len(h.sent) != 0 {
		t.Errorf("images sent after a failed dump: %+v", h.sent)
	}
	if r.Prediction == nil || cp.PredictionMatched == nil {
		t.Errorf("prediction %v, matched %v: the report must compare them", r.Prediction, cp.PredictionMatched)
	}
	if _, ok := finding(r, "checkpoint.prediction"); !ok {
		t.Error("no checkpoint.prediction finding")
	}
}

// TestCheckpointBadImagesRestoreInPlace: when the images do not match the
// frozen tree they are not sent, and the workload, which the dump stopped,
// is restored in place from the local images and verified.
func TestCheckpointBadImagesRestoreInPlace(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{}
	if err := Checkpoint(t.Context(), testDeps(t, h, rt, cr), agentapi.CheckpointOptions{Command: selfCommand(t)}, false); err != nil {
		t.Fatal(err)
	}
	r := onlyReport(t, h)
	if len(h.sent) != 0 {
		t.Errorf("images that do not match the tree were sent: %+v", h.sent)
	}
	if f, ok := finding(r, "checkpoint.images"); !ok || f.Status != reports.Fail {
		t.Errorf("checkpoint.images %+v: want fail", f)
	}
	f, ok := finding(r, "checkpoint.restored-in-place")
	if !ok || f.Status != reports.Pass {
		t.Fatalf("checkpoint.restored-in-place %+v: want pass", f)
	}
	if len(cr.restores) != 1 || !cr.restores[0].RestoreSibling || cr.restores[0].Root == "" {
		t.Errorf("restores %+v: want one sibling restore onto the rootfs", cr.restores)
	}
	if !slices.Equal(rt.adopted, []int{os.Getpid()}) {
		t.Errorf("adopted %v, want the restored pid", rt.adopted)
	}
	if cp := r.Checkpoint; cp.WorkloadRunning == nil || !*cp.WorkloadRunning {
		t.Errorf("workload_running %v after the restore in place, want true", cp.WorkloadRunning)
	}
}

// TestCheckpointLeaveRunningNoRestoreInPlace: with --leave-running a failed save
// leaves the original alone: nothing is restored in place.
func TestCheckpointLeaveRunningNoRestoreInPlace(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{}
	o := agentapi.CheckpointOptions{Command: selfCommand(t), LeaveRunning: true}
	if err := Checkpoint(t.Context(), testDeps(t, h, rt, cr), o, false); err != nil {
		t.Fatal(err)
	}
	r := onlyReport(t, h)
	if len(cr.restores) != 0 {
		t.Errorf("restored in place although the dump left the workload running: %+v", cr.restores)
	}
	if !cr.dumps[0].LeaveRunning {
		t.Error("the dump lacks --leave-running")
	}
	if f, ok := finding(r, "checkpoint.leave-running"); !ok || f.Status != reports.Pass {
		t.Errorf("checkpoint.leave-running %+v: want pass", f)
	}
}

// TestCheckpointStartFails: a workload that cannot start is a finding;
// nothing is dumped.
func TestCheckpointStartFails(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{startErr: errors.New("exec: no such file")}, &fakeCRIU{}
	if err := Checkpoint(t.Context(), testDeps(t, h, rt, cr), agentapi.CheckpointOptions{Command: []string{"/nonexistent"}}, false); err != nil {
		t.Fatal(err)
	}
	r := onlyReport(t, h)
	if f, ok := finding(r, "workload.start"); !ok || f.Status != reports.Fail {
		t.Errorf("workload.start %+v: want fail", f)
	}
	if len(cr.dumps) != 0 {
		t.Errorf("dumped a workload that did not start: %+v", cr.dumps)
	}
}

// TestRestoreNoImages: a restore whose images never arrive is an error of
// the job, and CRIU is never called.
func TestRestoreNoImages(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{}
	m := images.Manifest{Workload: container.CommandWorkload, Command: selfCommand(t), KernelRelease: "6.1.0-test", CRIUVersion: "3.17.1", Arch: "x86_64"}
	err := Restore(t.Context(), testDeps(t, h, rt, cr), agentapi.RestoreOptions{Manifest: m}, false)
	if err == nil {
		t.Fatal("no error although the images never arrived")
	}
	if len(cr.restores) != 0 {
		t.Errorf("criu restore ran without images: %+v", cr.restores)
	}
}

// TestRestoreRefusesOtherKernel: images from another kernel are refused in
// the report before any image is asked for.
func TestRestoreRefusesOtherKernel(t *testing.T) {
	h, rt, cr := &fakeHost{}, &fakeRuntime{ctr: &self{}}, &fakeCRIU{}
	m := images.Manifest{Workload: container.CommandWorkload, Command: selfCommand(t), KernelRelease: "7.3.0-other", CRIUVersion: "3.17.1", Arch: "x86_64"}
	if err := Restore(t.Context(), testDeps(t, h, rt, cr), agentapi.RestoreOptions{Manifest: m}, false); err != nil {
		t.Fatal(err)
	}
	r := onlyReport(t, h)
	if r.Checkpoint.Error == "" || r.Checkpoint.RestoreOK {
		t.Errorf("checkpoint %+v: want a refusal", r.Checkpoint)
	}
	if slices.Contains(h.stages, agentapi.StageReceiveImages) {
		t.Error("asked for the images of a refused checkpoint")
	}
}
